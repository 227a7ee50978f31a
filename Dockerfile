# Image of the production stack in docker-compose.yaml (docs/deployment.md).
#
# Airflow 3.3.2 on Python 3.11 with Dereg's pinned runtime dependencies: requirements.txt installed
# with requirements.lock as constraints, as `make venv` does before it adds the development ones
# (requirements-dev.txt: tests, lint, the demo stacks), which never enter the image. dags/, plugins/
# and include/ are not copied in: docker-compose.yaml mounts them, so a manifest or DAG change needs
# no rebuild.
FROM apache/airflow:3.3.2-python3.11

# The MySQL provider needs mysqlclient, which pip builds against the MariaDB client headers when the
# image's own build does not match the lock's version.
USER root
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends build-essential pkg-config libmariadb-dev \
       libpango-1.0-0 libpangoft2-1.0-0 fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*
# pg_dump must be at least as new as the PostgreSQL server it dumps the schema of (an older one
# refuses; the backup then holds the rows only and says so): PostgreSQL's own repository gives the
# client 17, which dumps servers 9.2 to 17 (dereg.backup.schema finds /usr/lib/postgresql/<major>).
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends curl ca-certificates \
    && install -d /usr/share/postgresql-common/pgdg \
    && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
       https://www.postgresql.org/media/keys/ACCC4CF8.asc \
    && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt $(. /etc/os-release && echo "$VERSION_CODENAME")-pgdg main" \
       > /etc/apt/sources.list.d/pgdg.list \
    && apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends postgresql-client-17 \
    && /usr/lib/postgresql/17/bin/pg_dump --version \
    && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow:0 requirements.txt requirements.lock /opt/dereg-build/
RUN pip install --no-cache-dir -r /opt/dereg-build/requirements.txt -c /opt/dereg-build/requirements.lock \
    # The Celery provider (and celery, kombu, redis, asyncpg) are pinned in requirements.txt, as
    # `make distributed-demo` runs them; the PostgreSQL and Redis providers come with the image.
    # Fail the build here rather than at the first task if one is missing.
    && python -c "import airflow.providers.celery, airflow.providers.postgres, airflow.providers.redis"

# Format 7's row cut is C (module _dereg_cut, plugins/dereg/backup/_cut.c, built by setup.py;
# docs/backup-format.md, "The cut in C"). plugins/ is mounted, never installed, so the module is built
# here (build-essential above) into a folder of its own, on the PYTHONPATH after plugins/; without it
# every backup fails at import, saying how to build it. The build copies what setup.py reads only and
# keeps the module only (pip's --target also writes metadata and an empty dereg/). As root, for
# /opt; PIP_USER=false because the image sets PIP_USER, which --target refuses.
USER root
COPY setup.py pyproject.toml /opt/dereg-build/native/
COPY plugins/dereg/backup/_cut.c /opt/dereg-build/native/plugins/dereg/backup/
RUN PIP_USER=false pip install --no-cache-dir --no-deps --target /opt/dereg-build/target /opt/dereg-build/native \
    && mkdir -p /opt/dereg-native && mv /opt/dereg-build/target/_dereg_cut.*.so /opt/dereg-native/ \
    && rm -rf /opt/dereg-build/target /opt/dereg-build/native \
    && PYTHONPATH=/opt/dereg-native python -c "import _dereg_cut"
USER airflow

# Mount points of the named volumes, created here so that Docker copies their owner (airflow, group 0)
# into a fresh volume. Group-writable because the containers may run as any AIRFLOW_UID in group 0.
RUN mkdir -p /opt/airflow/dereg/state /opt/airflow/dereg/keyring /opt/airflow/dereg/output /opt/airflow/auth \
    && chmod -R g=u /opt/airflow/dereg /opt/airflow/auth

# `import dereg` from the mounted plugins folder in every process, and `python -m dereg.cli ...`.
ENV PYTHONPATH=/opt/airflow/plugins:/opt/dereg-native
