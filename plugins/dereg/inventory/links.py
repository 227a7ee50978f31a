"""How every table's rows belong to the data subjects: declared foreign keys, links inferred from
column names and confirmed by values on the server, and the manifest's `links:` (added or rejected).

(Interface fixed for the issue-15 work; the inference is being built.)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from dereg.model import Link, SourceInventory


def declared_links(inventory: SourceInventory) -> list[Link]:
    """Every declared foreign key as a Link (kind "declared")."""
    return [
        Link(
            table=t.qualified_name,
            columns=list(fk.columns),
            ref_table=fk.ref_qualified_name,
            ref_columns=list(fk.ref_columns),
            kind="declared",
            on_delete=fk.on_delete,
        )
        for t in inventory.tables
        for fk in t.foreign_keys
    ]


def find_links(
    engine: sa.Engine,
    inventory: SourceInventory,
    *,
    subject_table: str | None = None,
    specs: Sequence = (),
) -> list[Link]:
    """The links of `inventory`'s tables: declared, inferred (checked on `engine`) and the manifest's
    `specs` (`LinkSpec`s: added, or rejected with `reject: true`)."""
    return declared_links(inventory)
