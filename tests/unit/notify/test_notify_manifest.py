"""`sources[].notify`'s shapes: the subject table's own columns, a table the subjects refer to
(guardians), a table that refers to them (a profile table), or `none: true` with a reason; and the
problems of a mix of them, each with its path and what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dereg.errors import ManifestError
from dereg.manifest import parse_manifest

DEMO = Path(__file__).resolve().parents[3] / "include" / "companies" / "demo-academy.yaml"


def _source(notify):
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["sources"][0]["notify"] = notify
    return parse_manifest(data, "x.yaml").sources[0]


def _problems(notify) -> list[str]:
    with pytest.raises(ManifestError) as err:
        _source(notify)
    return err.value.problems


def test_the_subject_tables_own_columns():
    source = _source({"email_column": "email", "name_column": "name"})
    assert source.notify.shape == "subject" and source.notify_table == "students"
    assert source.reaches_customers and source.required_tables == ["students"]
    named = _source({"table": "students", "email_column": "email", "name_column": "name"})
    assert named.notify.shape == "subject" and named.notify_table == "students"


def test_guardians_and_profile_tables():
    guardians = _source(
        {"table": "guardians", "link_column": "guardian_id", "email_column": "email", "name_column": "name"}
    )
    assert guardians.notify.shape == "referred" and guardians.notify_table == "guardians"
    assert guardians.required_tables == ["students", "guardians"]
    profile = _source(
        {"table": "user_profile", "subject_column": "user_id", "email_column": "mail", "name_column": "nick"}
    )
    assert profile.notify.shape == "referring" and profile.notify_table == "user_profile"


def test_none_with_a_reason_reaches_no_one_and_says_why():
    source = _source({"none": True, "reason": "walk-in visitors leave no address"})
    assert source.notify.shape == "none" and not source.reaches_customers and source.notify_table is None


@pytest.mark.parametrize(
    ("notify", "expected"),
    [
        ({"none": True}, ["sources[0].notify.reason: is required with none: true"]),
        ({"none": True, "reason": "no"}, ["sources[0].notify.reason: say why (at least 5 characters)"]),
        (
            {"none": True, "reason": "kiosk only", "email_column": "email"},
            ["sources[0].notify: none: true says no customer can be reached, yet email_column"],
        ),
        (
            {"email_column": "email"},
            ["sources[0].notify.name_column: is required (the column holding the recipients' names)"],
        ),
        (
            {"table": "guardians", "email_column": "email", "name_column": "name"},
            ["sources[0].notify: table guardians is not the subject table students: say how its rows reach"],
        ),
        (
            {
                "table": "g",
                "link_column": "a",
                "subject_column": "b",
                "email_column": "e",
                "name_column": "n",
            },
            ["sources[0].notify: give link_column (the subject table refers to g) or subject_column"],
        ),
        (
            {"link_column": "guardian_id", "email_column": "e", "name_column": "n"},
            ["sources[0].notify.table: is required with link_column"],
        ),
        (
            {"key_column": "id", "email_column": "e", "name_column": "n"},
            ["sources[0].notify.key_column: only goes with link_column"],
        ),
        (
            {"email_column": "e", "name_column": "n", "reason": "not here"},
            ["sources[0].notify.reason: is only for none: true"],
        ),
        (
            "none",
            ["sources[0].notify: must be a mapping: the columns that reach the customers, or {none: true"],
        ),
        (
            {"email_column": "e", "name_column": "n", "phone_column": "p"},
            ["sources[0].notify.phone_column: is not a known field"],
        ),
    ],
)
def test_a_wrong_shape_is_a_problem_with_its_path(notify, expected):
    problems = _problems(notify)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), problem


def test_every_problem_of_notify_comes_out_at_once():
    problems = _problems({"table": "guardians", "link_column": "1bad"})
    assert [p.split(":")[0] for p in problems] == [
        "sources[0].notify.link_column",
        "sources[0].notify.email_column",
        "sources[0].notify.name_column",
    ]
