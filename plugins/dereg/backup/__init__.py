"""Encrypted off-site backups: archive (write), restore (read back and verify), catalog, S3 access.

The format is specified in docs/backup-format.md.
"""
