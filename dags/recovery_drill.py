# Airflow DAG file.
"""The quarterly recovery drill (wiring only; see dereg.drilldag)."""

from dereg.drilldag import build_drill_dag

dag = build_drill_dag()
