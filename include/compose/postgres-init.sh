#!/bin/sh
# PostgreSQL init script of docker-compose.yaml: runs once, when the data volume is empty
# (mounted into /docker-entrypoint-initdb.d). One server, two databases with their own owners:
#   airflow  Airflow's metadata database and the Celery result backend  (role airflow)
#   dereg    Dereg's compliance store: ledger, artifacts, notices, backup catalog  (role dereg)
# Neither role can connect to the other's database. Passwords come from .env.
set -eu
: "${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD in .env}"
: "${DEREG_DB_PASSWORD:?set DEREG_DB_PASSWORD in .env}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v airflow_password="$AIRFLOW_DB_PASSWORD" -v dereg_password="$DEREG_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;

CREATE ROLE dereg LOGIN PASSWORD :'dereg_password';
CREATE DATABASE dereg OWNER dereg;
REVOKE ALL ON DATABASE dereg FROM PUBLIC;
SQL
echo "postgres-init: databases airflow and dereg created"
