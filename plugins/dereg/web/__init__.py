"""Pages served by the Dereg Airflow plugin (plugins/dereg_plugin.py)."""
