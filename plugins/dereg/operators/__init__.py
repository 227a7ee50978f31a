"""Airflow operators: `ComplianceOperator` and one thin operator per closure stage."""
