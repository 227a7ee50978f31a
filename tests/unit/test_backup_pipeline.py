"""The backup's pipeline pieces that decide what runs when: the uploader's hold while the store is
checked, the PostgreSQL worker loop and the post-data plan that builds a table's keys once it is
loaded. The whole backup and restore are covered against real servers in tests/integration/backup."""

from __future__ import annotations

import os
import threading

import pytest

from dereg.backup.codec import open_sealed
from dereg.backup.pgcopy import _run_parallel
from dereg.backup.schema import pg_post_data_by_table, pg_post_data_phases
from dereg.backup.writer import Uploader
from dereg.connections import S3Location


class _Store:
    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def put_object(self, *, Bucket, Key, Body, ContentType, **lock):  # noqa: N803 - boto3's names
        with self.lock:
            self.objects[Key] = Body


def _uploader(store: _Store) -> Uploader:
    location = S3Location(None, None, None, region="x", bucket="b", prefix="p")
    return Uploader(store, location, {})


def test_chunks_sealed_while_the_store_is_checked_are_kept_and_uploaded_at_release():
    store, key = _Store(), os.urandom(32)
    uploader = _uploader(store)
    uploader.hold()
    # more chunks than the queue takes at once: none waits for the store's check
    count = Uploader.QUEUED_CHUNKS + 20
    for i in range(count):
        uploader.seal_later(f"k{i}", key, b"row\n" * 256, b"aad")
    for _ in range(200):  # sealing runs on the pool
        if uploader._held_bytes and len(uploader._held) == count:
            break
        threading.Event().wait(0.01)
    assert store.objects == {}
    assert len(uploader._held) == count
    uploader.release()
    uploader.drain()
    uploader.close()
    assert sorted(store.objects) == sorted(f"k{i}" for i in range(count))
    assert open_sealed(key, store.objects["k0"], b"aad") == b"row\n" * 256


def test_a_refused_store_gets_none_of_the_chunks_kept_on_hold():
    store, key = _Store(), os.urandom(32)
    uploader = _uploader(store)
    uploader.hold()
    for i in range(5):
        uploader.seal_later(f"k{i}", key, b"x" * 100, b"aad")
    uploader.refuse(RuntimeError("bucket refused"))
    with pytest.raises(RuntimeError, match="bucket refused"):
        uploader.seal_later("late", key, b"x", b"aad")
    uploader.drain()
    uploader.close()
    assert store.objects == {} and uploader._held == []


def test_closing_the_uploader_ends_a_wait_for_room_and_uploads_nothing_more():
    # a failed backup closes its uploader while another thread (the group blocks' writer) waits for
    # room in the queue behind uploads that are cancelled, or held for the store's check: it must
    # get an error, not wait for ever, and the close must not wait for the store's check either
    from dereg.errors import BackupError

    store = _Store()
    uploader = _uploader(store)
    uploader.hold()
    uploader.put_later("first", b"x" * Uploader.QUEUED_BYTES)  # fills the queue, waits for the check
    outcome = []

    def writer() -> None:
        try:
            uploader.put_later("second", b"y" * 10)
            outcome.append("queued")
        except BackupError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive()  # waiting for room
    closing = threading.Thread(target=uploader.close)
    closing.start()
    closing.join(5)
    thread.join(5)
    assert not closing.is_alive() and not thread.is_alive()
    assert isinstance(outcome[0], BackupError) and "stopped" in str(outcome[0])
    assert store.objects == {}


def test_the_worker_loop_runs_the_jobs_a_job_adds_on_any_free_worker():
    done: list[tuple[str, str]] = []
    lock = threading.Lock()

    def work(worker: str, job: str):
        with lock:
            done.append((worker, job))
        return [f"{job}-keys"] if not job.endswith("-keys") else None

    _run_parallel(["a", "b", "c"], ["w1", "w2"], work)
    assert sorted(j for _, j in done) == ["a", "a-keys", "b", "b-keys", "c", "c-keys"]
    loaded = [j for _, j in done]
    assert all(loaded.index(f"{t}-keys") > loaded.index(t) for t in "abc")


def test_the_worker_loop_stops_at_the_first_error_and_raises_it():
    ran: list[str] = []

    def work(worker: str, job: str):
        ran.append(job)
        if job == "bad":
            raise ValueError("boom")
        return ["never"] if job == "bad" else None

    with pytest.raises(ValueError, match="boom"):
        _run_parallel(["bad", "x", "y"], ["w1"], work)
    assert ran == ["bad"]


POST_DATA = """SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: a a_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.a
    ADD CONSTRAINT a_pkey PRIMARY KEY (id);


--
-- Name: B x_pkey; Type: CONSTRAINT; Schema: S p; Owner: -
--

ALTER TABLE ONLY "S p"."B"
    ADD CONSTRAINT x_pkey PRIMARY KEY (id);


--
-- Name: a_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX a_idx ON public.a USING btree (v);


--
-- Name: a a_b_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.a
    ADD CONSTRAINT a_b_fkey FOREIGN KEY (b) REFERENCES "S p"."B"(id);
"""


def test_post_data_keys_and_indexes_are_grouped_by_the_table_they_belong_to():
    preamble, by_table, later = pg_post_data_by_table(POST_DATA, {"S p.B": 10, "public.a": 1})
    assert "set_config" in preamble
    assert list(by_table) == [("S p", "B"), ("public", "a")]  # largest first
    assert [w.split(";")[0] for w, _ in by_table[("public", "a")]] == ["a a_pkey", "a_idx"]
    assert len(later) == 1 and "FOREIGN KEY" in later[0][0][0][1]
    # the phases are the same plan
    _, phases = pg_post_data_phases(POST_DATA, {"S p.B": 10, "public.a": 1})
    assert phases == [list(by_table.values()), *later]


def test_restore_fetches_the_first_chunks_of_the_largest_tables_and_of_small_ones_that_fit():
    from dereg.backup.restore import _Chunks

    class Pool:
        def __init__(self):
            self.fetched: list[str] = []

        def submit(self, fn, name, index, key, last):
            self.fetched.append(name)

    pool = Pool()
    chunks = _Chunks(pool, None, None, "bk", b"k" * 32, 6)
    tables = [(f"big{i}", {"bytes": 50 << 20, "chunks": [f"b{i}/0", f"b{i}/1"]}) for i in range(3)]
    tables.append(("packed", {"bytes": 10, "chunks": ["p/0"], "pack": {"name": "p0"}}))
    tables += [(f"small{i}", {"bytes": 3 << 20, "chunks": [f"s{i}/0", f"s{i}/1"]}) for i in range(4)]
    chunks.prefetch(tables, 2, small_bytes=5 << 20)
    # the two largest; then the next first chunks (2 MiB each at most) while 5 MiB last
    assert pool.fetched == ["big0", "big1", "big2", "small0"]
    pool.fetched.clear()
    chunks = _Chunks(pool, None, None, "bk", b"k" * 32, 6)
    chunks.prefetch(tables[3:], 0, small_bytes=5 << 20)
    assert pool.fetched == ["small0", "small1"]


def test_the_backup_and_restore_commands_leave_the_garbage_collector_as_they_found_it(capsys):
    import gc

    from dereg.cli import main

    assert gc.isenabled()
    # refused before its work: its imports ran with the collector off, which is back on
    assert main(["restore", "bk-x", "--from", "s3://b/p"]) == 2
    assert "--verify" in capsys.readouterr().err
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        assert main(["restore", "bk-x", "--from", "s3://b/p"]) == 2
        assert not gc.isenabled()
    finally:
        gc.enable()
