"""The Dereg Airflow plugin, on the API server:

- `/dereg/compliance/`: the Compliance view (each company's closure stage, notices, backups, verified
  certificates), for signed-in Airflow users; shown in the UI's navigation as "Compliance";
- `/dereg/answer/...`, `/dereg/copy/...`: the customers' answer and copy pages (signed links, no login).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dereg.web.answers_app import app as answers_app
from dereg.web.compliance_app import app as compliance_app


class DeregPlugin(AirflowPlugin):
    name = "dereg"
    # Starlette matches mounts in order: the longer prefix must come before `/dereg`.
    fastapi_apps = [
        {"app": compliance_app, "url_prefix": "/dereg/compliance", "name": "Dereg compliance view"},
        {"app": answers_app, "url_prefix": "/dereg", "name": "Dereg customer answers"},
    ]
    external_views = [
        {
            "name": "Compliance",
            "href": "dereg/compliance/",
            "url_route": "compliance",
            "destination": "nav",
            "nav_top_level": True,
        }
    ]
