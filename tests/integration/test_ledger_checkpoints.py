"""The ledger's off-site anchor: signed checkpoints in a real SeaweedFS bucket under Object Lock.

Whoever can write the compliance store can drop the last entries and move the head, or rewrite
the whole chain from an edited entry: the hash chain alone still verifies. The checkpoints the
stages write to the backup bucket, signed with the deployment's key, catch both through
`dereg verify-ledger --checkpoints` and `dereg verify-certificate --checkpoints`."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from dereg.cli import main as dereg
from dereg.connections import S3Location
from dereg.evidence.certificate import sign_certificate, write_certificate
from dereg.evidence.checkpoints import FOLDER, compare_with_checkpoints, sign_checkpoint, write_checkpoint
from dereg.evidence.ledger import Ledger, entry_hash
from dereg.evidence.store import open_store
from dereg.keys import Keyring, public_key_pem

pytestmark = pytest.mark.integration
STAGES = ("preflight", "inventory", "plan", "backup", "erase", "verify_erasure")


class Anchored:
    """A ledger of one closure run with a checkpoint after every stage, a certificate citing it."""

    def __init__(self, store_url, location, keyring, tmp_path):
        self.store_url, self.location, self.keyring = store_url, location, keyring
        self.store = open_store(store_url)
        self.ledger = Ledger(self.store)
        cited = []
        for stage in STAGES:
            self.ledger.append(company_id="c1", run_id="r1", stage=stage, event="started", actor="ops")
            cited.append(
                self.ledger.append(
                    company_id="c1",
                    run_id="r1",
                    stage=stage,
                    event="succeeded",
                    actor="ops",
                    details={"n": 1},
                )
            )
            self.checkpoint(stage)
        self.ledger.append(company_id="c1", run_id="r1", stage="certificate", event="started", actor="ops")
        body = {
            "title": "Certificate",
            "company": {"id": "c1"},
            "ledger": {
                "head_hash": self.ledger.head().hash,
                "checkpoints": self.url,
                "entries": [{"stage": e.stage, "entry_id": e.entry_id, "hash": e.hash} for e in cited],
            },
        }
        self.cert_path, _ = write_certificate(
            sign_certificate(body, keyring), tmp_path / "out", "certificate"
        )
        self.ledger.append(company_id="c1", run_id="r1", stage="certificate", event="succeeded", actor="ops")
        self.checkpoint("certificate")
        self.pem = tmp_path / "signing.pem"
        self.pem.write_text(public_key_pem(keyring.public_key()))

    @property
    def url(self) -> str:
        return f"s3://{self.location.bucket}/{self.location.prefix}"

    def checkpoint(self, stage: str):
        return write_checkpoint(
            self.store,
            self.location,
            self.keyring,
            company_id="c1",
            run_id="r1",
            stage=stage,
            retention_days=1,
            object_lock=True,
        )

    def verify_ledger(self, *extra: str) -> int:
        return dereg(["verify-ledger", "--store", self.store_url, *extra])

    def verify_certificate(self, *extra: str) -> int:
        return dereg(["verify-certificate", str(self.cert_path), "--store", self.store_url, *extra])


@pytest.fixture
def anchored(seaweed, s3_client, bucket_name, store_url, keyring, tmp_path, monkeypatch) -> Anchored:
    s3_client.create_bucket(Bucket=bucket_name, ObjectLockEnabledForBucket=True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    monkeypatch.setenv("DEREG_KEYRING", str(tmp_path / "no-keyring-here.json"))  # an auditor's machine
    location = S3Location(
        seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, "cn-north-1", bucket_name, "closures/c1"
    )
    return Anchored(store_url, location, keyring, tmp_path)


def _drop_last_entry_and_move_the_head(store) -> None:
    with store.begin() as conn:
        last = conn.execute(sa.text("SELECT MAX(seq) FROM ledger")).scalar_one()
        conn.execute(sa.text("DELETE FROM ledger WHERE seq = :s"), {"s": last})
        prev = conn.execute(sa.text("SELECT seq, hash FROM ledger WHERE seq = :s"), {"s": last - 1}).one()
        conn.execute(sa.text("UPDATE ledger_head SET seq = :s, hash = :h"), {"s": prev.seq, "h": prev.hash})


def _rewrite_from(store, seq: int, **changes) -> None:
    """Edit entry `seq` and recompute every hash from there, as someone with the store would."""
    with store.begin() as conn:
        rows = conn.execute(sa.text("SELECT * FROM ledger WHERE seq >= :s ORDER BY seq"), {"s": seq}).all()
        prev = conn.execute(sa.text("SELECT hash FROM ledger WHERE seq = :s"), {"s": seq - 1}).scalar_one()
        for row in rows:
            fields = {**row._mapping, **(changes if row.seq == seq else {})}
            digest = entry_hash(
                prev,
                seq=row.seq,
                ts=fields["ts"],
                company_id=fields["company_id"],
                run_id=fields["run_id"],
                stage=fields["stage"],
                event=fields["event"],
                actor=fields["actor"],
                details_json=fields["details"],
            )
            conn.execute(
                sa.text("UPDATE ledger SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :s"),
                {"a": fields["actor"], "p": prev, "h": digest, "s": row.seq},
            )
            prev = digest
        conn.execute(sa.text("UPDATE ledger_head SET hash = :h"), {"h": prev})


def test_each_checkpoint_is_signed_locked_and_matches_the_ledger(anchored, s3_client, capsys):
    a = anchored
    listed = s3_client.list_objects_v2(Bucket=a.location.bucket, Prefix=f"closures/c1/{FOLDER}/")
    keys = [o["Key"] for o in listed["Contents"]]
    assert len(keys) == len(STAGES) + 1
    head = a.ledger.head()
    assert keys[-1] == f"closures/c1/{FOLDER}/{head.seq:012d}-{head.hash}.json"
    retention = s3_client.get_object_retention(Bucket=a.location.bucket, Key=keys[-1])["Retention"]
    assert retention["Mode"] == "COMPLIANCE" and retention["RetainUntilDate"] > dt.datetime.now(dt.UTC)
    document = json.loads(s3_client.get_object(Bucket=a.location.bucket, Key=keys[-1])["Body"].read())
    assert document["body"]["seq"] == head.seq and document["body"]["stage"] == "certificate"

    assert a.verify_ledger("--checkpoints", a.url, "--public-key", str(a.pem)) == 0
    out = capsys.readouterr().out
    assert f"matches the latest signed checkpoint in s3://{a.location.bucket}/closures/c1/{FOLDER}/" in out
    assert a.verify_certificate("--public-key", str(a.pem), "--checkpoints", a.url) == 0
    out = capsys.readouterr().out
    assert "every ledger entry the certificate cites is anchored" in out and out.strip().endswith("VALID")

    # entries after the latest checkpoint are reported as not anchored, not as tampering
    a.ledger.append(company_id="c2", run_id="r9", stage="preflight", event="started", actor="ops")
    assert a.verify_ledger("--checkpoints", a.url, "--public-key", str(a.pem)) == 0
    assert (
        f"entries {head.seq + 1}..{head.seq + 1} were written after the latest checkpoint"
        in capsys.readouterr().out
    )


def test_dropping_the_last_entry_and_moving_the_head_is_found(anchored, capsys):
    a = anchored
    _drop_last_entry_and_move_the_head(a.store)
    assert a.ledger.verify().ok  # the chain alone cannot see it
    assert a.verify_ledger("--checkpoints", a.url, "--public-key", str(a.pem)) == 1
    out = capsys.readouterr().out
    assert "entries were removed from the end" in out and "does NOT MATCH" in out
    assert a.verify_certificate("--public-key", str(a.pem), "--checkpoints", a.url) == 1
    out = capsys.readouterr().out
    assert "entries were removed from the end" in out and out.strip().endswith("INVALID")


def test_a_chain_rewritten_from_an_edited_entry_is_found(anchored, capsys):
    a = anchored
    _rewrite_from(a.store, 3, actor="mallory")
    assert a.ledger.verify().ok  # recomputed: the chain alone cannot see it
    assert a.verify_ledger("--checkpoints", a.url, "--public-key", str(a.pem)) == 1
    assert "the ledger was rewritten up to there" in capsys.readouterr().out
    assert a.verify_certificate("--public-key", str(a.pem), "--checkpoints", a.url) == 1


def test_objects_written_by_someone_else_do_not_anchor_and_are_reported(anchored, s3_client, tmp_path):
    a = anchored
    # checkpoints signed by another key, for a ledger twice as long: not the deployment's, so reported
    other = Keyring.create(tmp_path / "other.json")
    head = a.ledger.head()
    forged = sign_checkpoint(
        {"seq": head.seq + 5, "head_hash": "f" * 64, "written_at": "x", "stage": "x"}, other
    )
    key = f"closures/c1/{FOLDER}/{head.seq + 5:012d}-{'f' * 64}.json"
    s3_client.put_object(Bucket=a.location.bucket, Key=key, Body=json.dumps(forged).encode())
    result = compare_with_checkpoints(a.store, a.location, a.keyring.public_key())
    assert not result.ok and result.anchored_seq == head.seq
    assert [p for p in result.problems if key in p and "not a checkpoint signed by the key" in p]
    # the same forgery checked against the other key proves the truncation it claims: why the key is pinned
    assert "removed from the end" in " ".join(
        compare_with_checkpoints(a.store, a.location, other.public_key()).problems
    )


def test_a_bucket_without_checkpoints_anchors_nothing(anchored, s3_client, capsys):
    a = anchored
    elsewhere = f"s3://{a.location.bucket}/closures/other"
    assert a.verify_ledger("--checkpoints", elsewhere, "--public-key", str(a.pem)) == 1
    assert "there is no ledger checkpoint in" in capsys.readouterr().out
    # without a key to check checkpoints against, a clear error
    assert a.verify_ledger("--checkpoints", a.url) == 2
    assert "--public-key" in capsys.readouterr().err


def test_a_missing_bucket_is_created_with_object_lock(seaweed, s3_client, bucket_name, store_url, keyring):
    """The first stages run before the backup creates the bucket: their checkpoint creates it, locked as
    the backup needs it (a put must never create it implicitly without Object Lock)."""
    store = open_store(store_url)
    Ledger(store).append(company_id="c1", run_id="r1", stage="preflight", event="succeeded", actor="ops")
    location = S3Location(
        seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, "cn-north-1", bucket_name, "closures/c1"
    )
    key = write_checkpoint(
        store,
        location,
        keyring,
        company_id="c1",
        run_id="r1",
        stage="preflight",
        retention_days=1,
        object_lock=True,
    )
    lock = s3_client.get_object_lock_configuration(Bucket=bucket_name)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert s3_client.get_object_retention(Bucket=bucket_name, Key=key)["Retention"]["Mode"] == "COMPLIANCE"
    assert compare_with_checkpoints(store, location, keyring.public_key()).ok
