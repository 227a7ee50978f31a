"""The erasure plan of an object source, and erase_objects' refusal handling (the S3 paths are also
run for real on SeaweedFS in tests/integration/erase/test_object_store.py)."""

from __future__ import annotations

import pytest

from dereg.classify.objects import ObjectGroup, ObjectInventory
from dereg.erase.objects import ObjectErasurePlan, build_object_plan, erase_objects
from dereg.errors import ErasureError
from dereg.model import ClassificationResult, ColumnFinding


def _inventory() -> ObjectInventory:
    return ObjectInventory(
        "uploads", "crm", "u", [ObjectGroup("forms", ".csv", 3, 300), ObjectGroup("", ".png", 2, 20)]
    )


def test_a_prefix_with_personal_data_is_erased_whole_and_its_hash_binds_the_prefix():
    found = ClassificationResult(
        "uploads",
        [
            ColumnFinding("forms", ".csv", ["cn_mobile"], "general", 10, 3, ["138****5678"], ""),
            ColumnFinding("", ".png", [], None, 2, 0, [], ""),
        ],
    )
    plan = build_object_plan("school", _inventory(), found)
    assert (plan.action, plan.objects, plan.bytes, plan.personal_groups) == (
        "delete",
        5,
        320,
        ["forms (.csv)"],
    )
    again = ObjectErasurePlan.from_dict(plan.to_dict())
    assert again.compute_hash() == plan.plan_hash
    again.prefix = "u2"  # a plan changed after approval no longer matches the approved hash
    assert again.compute_hash() != plan.plan_hash
    assert plan.summary() == {
        "kind": "objects",
        "action": "delete",
        "objects": 5,
        "bytes": 320,
        "personal_groups": 1,
        "plan_hash": plan.plan_hash,
    }


def test_a_prefix_without_personal_data_is_kept():
    found = ClassificationResult("uploads", [ColumnFinding("", ".png", [], None, 2, 0, [], "")])
    assert build_object_plan("school", _inventory(), found).action == "keep"


class _RefusingStore:
    """list_object_versions returns two versions; DeleteObjects refuses one, which is not locked."""

    def get_paginator(self, name):
        assert name == "list_object_versions"

        class P:
            def paginate(self, **kw):
                assert kw["Prefix"] == "u/"
                yield {"Versions": [{"Key": "u/a", "VersionId": "1"}, {"Key": "u/b", "VersionId": "2"}]}

        return P()

    def delete_objects(self, Bucket, Delete):
        return {"Errors": [{"Key": "u/b", "VersionId": "2", "Code": "AccessDenied"}]}

    def get_object_legal_hold(self, **kw):
        return {"LegalHold": {"Status": "OFF"}}

    def get_object_retention(self, **kw):
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "NoSuchObjectLockConfiguration"}}, "GetObjectRetention")


def test_an_unlocked_version_that_cannot_be_deleted_fails_the_stage_without_naming_it():
    with pytest.raises(
        ErasureError, match=r"1 version\(s\) could not be deleted.*AccessDenied.*DeleteObjectVersion"
    ) as e:
        erase_objects(_RefusingStore(), "crm", "u")
    assert "u/b" not in str(e.value)
