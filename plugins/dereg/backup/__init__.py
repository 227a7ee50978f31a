"""Encrypted off-site backups: archive (which tables, read how), writer (session, uploader, chunk
streams), pgcopy (the PostgreSQL COPY path), rowfast (raw-cursor row reader), objects (object
stores), restore (read back and verify), codec (rows, chunks, table descriptions), catalog, S3 access.

The format is specified in docs/backup-format.md.
"""
