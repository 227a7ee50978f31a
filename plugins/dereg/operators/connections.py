"""Moved to `dereg.connections`; these names stay importable from here for older imports."""

from __future__ import annotations

from dereg.connections import (  # noqa: F401 - re-exported
    backup_location,
    connection_exists,
    get_connection,
    scratch_url,
    source_engine,
    sqlalchemy_url,
)

#: the old name: `s3_location(conn_id, backup_spec)` is the backup store's location
s3_location = backup_location
