# Airflow DAG file.
"""The daily retention sweep (wiring only; see dereg.sweepdag)."""

from dereg.sweepdag import build_sweep_dag

dag = build_sweep_dag()
