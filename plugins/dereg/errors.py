"""Exceptions of Dereg. Each message names what is wrong, where, and what to do about it.

Messages never contain personal values: only companies, sources, tables, columns, counts and
references.
"""

from __future__ import annotations


class DeregError(Exception):
    """Base of every error Dereg raises on purpose."""


class ManifestError(DeregError):
    """A company manifest is invalid; `problems` lists every problem with its path."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"manifest {source} has {len(self.problems)} problem(s):\n{lines}\n"
            "Fix the manifest (schema: docs/manifest.md) and re-run preflight."
        )


class GateError(DeregError):
    """A stage refused to act because a precondition is not proven in the ledger."""


class KeyringError(DeregError):
    """The keyring is missing, unreadable, or lacks the key needed."""


class SourceError(DeregError):
    """A source system (database, S3 prefix) cannot be reached or read."""


class LinkError(SourceError, ValueError):
    """A link of the manifest's `links:` is wrong: it names a missing table or column, its values
    contradict it, or it rejects a link inventory did not find."""


class BackupError(DeregError):
    """A backup could not be written, or an archive is malformed."""


class RestoreMismatch(DeregError):
    """A restored backup differs from its manifest (row counts, hashes, or authentication)."""


class NotifyError(DeregError):
    """Notices could not be delivered (SMTP unreachable, refused)."""


class ErasureError(DeregError):
    """Erasure or its verification failed; nothing further is erased."""


class CertificateError(DeregError):
    """A certificate is malformed, its signature is wrong, or its ledger evidence is missing."""
