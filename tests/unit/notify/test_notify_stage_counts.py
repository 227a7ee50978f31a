"""The notify stage never sends a silent zero: per source it logs and records how many addresses
were reachable, a source with `notify: none` is recorded with its reason, and one without `notify`
(a dry run; a real run stops at preflight) with a warning. Dry runs here, on a real SQLite file."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa
import yaml

from dereg.connectors import Connectors
from dereg.manifest import parse_manifest
from dereg.model import ClassificationResult
from dereg.notify.notices import notify_customers

DEMO = Path(__file__).resolve().parents[3] / "include" / "companies" / "demo-academy.yaml"


def _manifest(notifies: list):
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    first = data["sources"][0]
    data["sources"] = []
    for i, notify in enumerate(notifies):
        source = {**first, "id": f"s{i}", "subject_table": "customers", "retain": []}
        source.pop("notify")
        if notify is not None:
            source["notify"] = notify
        data["sources"].append(source)
    return parse_manifest(data, "x.yaml")


def test_each_source_is_counted_or_says_why_not(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT)")
        conn.exec_driver_sql(
            "INSERT INTO customers VALUES (1, 'Ann', 'ann@example.cn'), (2, 'Bo', 'ANN@example.cn'), "
            "(3, 'Cy', NULL), (4, 'Di', 'di@example.cn')"
        )
    engine.dispose()
    manifest = _manifest(
        [
            {"email_column": "email", "name_column": "name"},
            {"none": True, "reason": "walk-in visitors leave no address"},
            None,
        ]
    )
    artifacts = SimpleNamespace(
        run_id="run1", classification=lambda sid: ClassificationResult(sid, []), store=None
    )
    log = logging.getLogger("test.notify")
    with caplog.at_level(logging.INFO, logger="test.notify"):
        result = notify_customers(
            manifest,
            artifacts,
            connectors=Connectors(engine=lambda conn_id: sa.create_engine(url)),
            pseudonym_key=b"k" * 32,
            notice_window_days=30,
            dry_run=True,
            log=log,
            progress=None,
        )
    sources = result["sources"]
    assert sources["s0"]["reachable"] == 2 and sources["s0"]["unreachable"] == 1
    assert sources["s1"] == {"reachable": 0, "unreachable": 0, "none": "walk-in visitors leave no address"}
    assert sources["s2"]["reachable"] == 0 and "notify is missing" in sources["s2"]["none"]
    text = caplog.text
    assert (
        "Source s0: 2 reachable address(es), 1 contact(s) without a usable address (from customers.email)"
        in text
    )
    assert "Source s1: no customer can be reached (notify: none): walk-in visitors" in text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(":")[0] for r in warnings] == ["Source s2"]
    assert "ann@" not in text.lower() and "di@" not in text  # counts and names of columns only
