"""The Dereg Airflow plugin: mounts the customers' answer and copy pages under /dereg on the API server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dereg.web.answers_app import app as answers_app


class DeregPlugin(AirflowPlugin):
    name = "dereg"
    fastapi_apps = [{"app": answers_app, "url_prefix": "/dereg", "name": "Dereg customer answers"}]
