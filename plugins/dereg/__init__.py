"""Dereg: the personal-data side of closing down a company, as Airflow pipelines."""

__version__ = "0.1.0"
