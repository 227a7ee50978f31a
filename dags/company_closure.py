# Airflow DAG file.
"""One `closure__<company_id>` DAG per manifest in include/companies/ (wiring only; see dereg.dagfactory)."""

from dereg.dagfactory import build_all

globals().update(build_all())
