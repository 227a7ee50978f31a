"""The cut of a version 7 backup's sealed tables (groupkeys.py): each row of a subject, as `n, line
number, row`, into its subject group's section, each row of no subject into the stored stream, every
row hashed as plain text. It runs for every row of every sealed table, so a large table (one that
`psql` reads, pgcopy.PSQL_COPY_BYTES) is cut in a process of its own, `python -m
dereg.backup.groupcut`, that reads psql's output itself: the cut's Python then runs on the other core
instead of under the backup's GIL, beside the reading of the other tables. This module imports only
what that process needs (it starts in about 60 ms).

The process's protocol (not part of the backup format): its one argument is a file descriptor (an
unnamed temporary file of the sealer, passed to it) holding the pickled {link value: subject
number} maps; on standard input one job per line (`main`), each a table, whose psql it starts
itself (psql's output is read by the cutting process, not by the backup's); on standard output, per
job, records, each an ASCII header line and its bytes: `S <length>` rows of no subject (whole lines),
`F <group> <entries> <length>` one zstd frame of a group's section, and at the end `E <rows>
<subject rows> <plain sha256> <psql status> <length>` with what psql said, or `X <length>` with an
error naming the table (never a row), after which the process ends. One process serves the
backup's sealed tables one after the other (its start and the maps cost about 0.1 s of CPU).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys

import zstandard

from dereg.errors import BackupError

#: zstd level of a block's sections, the chunks' level: level 3 cost more time (sections are
#: compressed on the reading thread) than the 1-2 % of size it saved
BLOCK_ZSTD_LEVEL = 1


class GroupRouter(io.RawIOBase):
    """`rows_sql`'s COPY in (scan order), cut: each subject's row, as `n, line number, row`, into its
    group's buffer (compressed as one zstd frame and spooled once it holds `FLUSH` rows, and at the
    end), each row of no subject to the stored stream `raw`, and every row's plain COPY text hashed,
    as a plain backup hashes the table. The row's link is its field `link`, or (None) an extra field
    in front, taken off. Runs for every row of every sealed table (in the backup's process for a
    table the driver reads, in a process of its own for one psql reads): a row costs a handful of C
    calls. Memory: at most `FLUSH` rows per group, and about `HELD_BYTES` in all."""

    FLUSH = 2048
    #: bytes held in all groups' buffers at most (about): past it every group is flushed, so that
    #: memory does not grow with the number of groups (rows arrive in scan order, every group's
    #: buffer fills at the same pace) nor with the rows' width
    HELD_BYTES = 32 * 1024 * 1024

    def __init__(
        self,
        sealer,
        table: str,
        raw,
        ordinal: dict[bytes, int],
        *,
        groups: int,
        group_size: int,
        link: int | None = None,
    ):
        super().__init__()
        self.sealer, self.table, self.raw, self.ordinal, self.link = sealer, table, raw, ordinal, link
        self.carry = b""
        self.group_size = group_size
        self.buffers: list[list[bytes]] = [[] for _ in range(groups)]
        self.plain = hashlib.sha256()
        self.rows = self.subject_rows = 0
        self.held = 0
        self.compressor = zstandard.ZstdCompressor(level=BLOCK_ZSTD_LEVEL)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        block = self.carry + bytes(data)
        cut = block.rfind(b"\n") + 1
        self.carry = block[cut:]
        if not cut:
            return len(data)
        lines = block[:cut].split(b"\n")
        lines.pop()
        buffers, size, ordinal, link = self.buffers, self.group_size, self.ordinal.get, self.link
        stored: list[bytes] = []
        stored_add = stored.append
        line_no = self.rows
        if link is None:  # the link in front: taken off, the rest is the plain row
            plains: list[bytes] = []
            plain_add = plains.append
            for line in lines:
                ref, _, row = line.partition(b"\t")
                plain_add(row)
                n = ordinal(ref)
                if n is None:
                    stored_add(row)
                else:
                    buffers[n // size].append(b"%d\t%d\t%b" % (n, line_no, row))
                line_no += 1
            plains.append(b"")
            self.plain.update(b"\n".join(plains))
        else:  # the plain backup's own COPY: hashed as it came
            self.plain.update(block[:cut])
            at = link + 1
            for line in lines:
                n = ordinal(line.split(b"\t", at)[link])
                if n is None:
                    stored_add(line)
                else:
                    buffers[n // size].append(b"%d\t%d\t%b" % (n, line_no, line))
                line_no += 1
        self.held += cut
        if stored:
            stored_add(b"")
            text = b"\n".join(stored)
            self.raw.write(text)
            self.held -= len(text)
            self.subject_rows -= len(stored) - 1
        self.subject_rows += line_no - self.rows
        self.rows = line_no
        if self.held > self.HELD_BYTES:
            for group in range(len(buffers)):
                self._flush(group)
            self.held = 0
        else:
            flush = self.FLUSH
            for group, got in enumerate(buffers):
                if len(got) >= flush:
                    self._flush(group)
        return len(data)

    def _flush(self, group: int) -> None:
        lines = self.buffers[group]
        if not lines:
            return
        self.buffers[group] = []
        lines.append(b"")
        self.sealer.spool_frame(
            group, self.table, len(lines) - 1, self.compressor.compress(b"\n".join(lines)), more=True
        )

    def finish(self) -> None:
        if self.carry:
            raise BackupError(f"the COPY of {self.table} ended inside a line")
        for group in range(len(self.buffers)):
            self._flush(group)


class _Records(io.RawIOBase):
    """The process's standard output: stored rows as `S` records (the router's `raw`), frames as `F`."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.out.write(b"S %d\n" % len(data))
        self.out.write(data)
        return len(data)

    def spool_frame(self, group: int, table: str, entries: int, frame: bytes, *, more: bool = False) -> None:
        self.out.write(b"F %d %d %d\n" % (group, entries, len(frame)))
        self.out.write(frame)


READ_BLOCK = 1 << 20


def _cut(job: dict, ordinal: dict[bytes, int], out) -> None:
    """One table: psql started as the job says, its output cut, the records written; the `E` record
    carries psql's status and what it said (its errors by SQLSTATE only: pgcopy.PsqlCopy)."""
    import subprocess

    records = _Records(out)
    router = GroupRouter(
        records,
        job["table"],
        records,
        ordinal,
        groups=job["groups"],
        group_size=job["group_size"],
        link=job["link"],
    )
    proc = subprocess.Popen(job["cmd"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(job["script"].encode())
        proc.stdin.close()
        while block := proc.stdout.read(READ_BLOCK):
            router.write(block)
        said = proc.stderr.read()
        status = proc.wait()
        if status == 0:
            router.finish()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    out.write(
        b"E %d %d %s %d %d\n"
        % (router.rows, router.subject_rows, router.plain.hexdigest().encode(), status, len(said))
    )
    out.write(said)
    out.flush()


def main(argv: list[str]) -> int:
    """Cut one table after another: a job per line of standard input (JSON: `table`, `link` (None:
    the link in front), `groups`, `group_size`, `at` and `length` of its pickled map in the file
    descriptor `argv[0]`, and psql's `cmd` and `script`); standard input closed: done."""
    import json

    fd = int(argv[0])
    out = sys.stdout.buffer
    maps: dict[int, dict[bytes, int]] = {}
    for line in sys.stdin.buffer:
        job = json.loads(line)
        try:
            if job["at"] not in maps:  # a map shared by several tables is read once
                maps[job["at"]] = pickle.loads(os.pread(fd, job["length"], job["at"]))
            _cut(job, maps[job["at"]], out)
        except BackupError as exc:  # its messages name the table, never a row
            message = str(exc).encode()
        except BrokenPipeError:  # the backup stopped reading (it failed elsewhere)
            return 1
        except Exception as exc:  # noqa: BLE001 - by its class only: a message might quote a value
            message = f"{type(exc).__name__} while cutting {job.get('table')}".encode()
        else:
            continue
        out.write(b"X %d\n" % len(message) + message)
        out.flush()
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
