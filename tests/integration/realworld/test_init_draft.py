"""`dereg init` on databases Dereg did not design: the draft names the pack's customers' table
first, proposes its kept accounting records under `retain:`, and validates as a manifest once the
placeholders a person fills in are filled. Nothing read from the database is in the draft."""

from __future__ import annotations

import pytest
import yaml

from dereg.cli import main
from dereg.manifest.load import load_manifest

pytestmark = pytest.mark.integration

#: what a person writes for each placeholder (by its key)
FILLED = {
    "company_id": "realworld_test",
    "zh": "测试公司",
    "en": "Test company",
    "legal_basis": "PIPL Art. 47: the company is deregistering",
    "closure_date": "2026-12-31",
    "operations_email": "ops@example.com",
    "sender": "Test <privacy@example.com>",
    "complaint": "privacy@example.com",
    "approvers": ["approver"],
    "conn_id": "realworld_db",
    "law": "会计档案管理办法 第十四条",
    "years": 30,
    "bucket": "realworld-backups",
    "prefix": "closures/test",
    "region": "cn-north-1",
    "retention_days": 3650,
    "subject_table": "customers",
    "name_column": "name",
    "link_column": "id",
}


def _fill(node, key=None):
    if isinstance(node, dict):
        return {k: _fill(v, k) for k, v in node.items()}
    if isinstance(node, list):
        if key in FILLED and any(isinstance(v, str) and v.startswith("TODO") for v in node):
            return FILLED[key]
        return [_fill(v, key) for v in node]
    if isinstance(node, str) and node.startswith("TODO"):
        return FILLED[key]
    return node


@pytest.mark.parametrize("pack", ["pagila", "mall"])
def test_init_drafts_a_manifest_that_validates_once_filled(pack, request, tmp_path, capsys):
    url, truth = request.getfixturevalue(pack)
    out = tmp_path / "draft.yaml"
    assert main(["init", url, "--out", str(out), "--source-id", "shop_db", "--sample-size", "500"]) == 0
    text = out.read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    source = document["sources"][0]

    assert source["subject_table"] == truth["subject"]["table"]
    # the other candidates are ranked in comments
    assert f"1. {truth['subject']['table']}: score" in text
    proposed = {r["table"] for r in source.get("retain") or []}
    assert set(truth["retain"]) <= proposed, set(truth["retain"]) - proposed
    assert all(r["law"] == "TODO: the law and article" for r in source["retain"])
    assert "TODO" in text and "decisions:" in text
    # notices: an e-mail column proposed, with table, address and name columns
    assert {"table", "email_column", "name_column"} <= set(source["notify"])

    # never a value: the pack's canaries and truth's canary strings are nowhere in the draft
    canaries = [v for values in (truth.get("canary") or {}).values() for v in values]
    assert canaries and not [v for v in canaries if v in text]
    printed = capsys.readouterr()
    assert not [v for v in canaries if v in printed.out + printed.err]

    # unfilled, the draft does not validate; filled, it does
    with pytest.raises(Exception, match="company_id"):
        load_manifest(out)
    filled = tmp_path / "filled.yaml"
    filled.write_text(yaml.safe_dump(_fill(document), allow_unicode=True), encoding="utf-8")
    manifest = load_manifest(filled)
    assert manifest.sources[0].subject_table == truth["subject"]["table"]
    assert {r.table for r in manifest.sources[0].retain} == proposed
