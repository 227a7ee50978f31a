# Airflow DAG file.
"""Key rotation on the policy's schedule (wiring only; see dereg.rotationdag)."""

from dereg.rotationdag import build_rotation_dag

dag = build_rotation_dag()
