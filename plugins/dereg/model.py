"""Plain data shared between stages: what inventory finds and what classification concludes.

These travel between Airflow tasks as JSON (through files in the output folder, referenced from
XCom), so each has `to_dict` / `from_dict`. None of them holds a personal value: masked samples only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ColumnInfo:
    name: str
    type: str  # SQLAlchemy type rendered as text, e.g. "VARCHAR(18)"
    nullable: bool = True
    primary_key: bool = False
    max_length: int | None = None


def qualified(schema: str | None, name: str) -> str:
    """A table's name as stages, plans and certificates show it: `schema.name`, or `name` alone in
    the source's default schema (None). Its identity is the (schema, name) pair; `build_plan`
    refuses a source where two tables would show the same name."""
    return f"{schema}.{name}" if schema else name


@dataclass
class ForeignKey:
    columns: list[str]
    ref_table: str
    ref_columns: list[str]
    #: the referred table's schema; None: the source's default schema
    ref_schema: str | None = None
    #: the declared ON DELETE rule ("CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT", "NO ACTION"),
    #: None when the server did not say (no rule: NO ACTION)
    on_delete: str | None = None
    #: the constraint's name, when the server gives one
    name: str | None = None

    @property
    def ref_qualified_name(self) -> str:
        return qualified(self.ref_schema, self.ref_table)


@dataclass
class TableInfo:
    name: str
    schema: str | None
    columns: list[ColumnInfo]
    primary_key: list[str]
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    row_count: int = 0
    #: why the table could not be read or counted (permissions, a dropped connection), else None
    problem: str | None = None
    #: a partition's parent table (qualified name), else None. A partition's rows are its parent's:
    #: the plan acts on the parent's rule, and they are counted once (under the partition)
    partition_of: str | None = None
    #: True for a partitioned (parent) table, whose rows all live in its partitions
    partitioned: bool = False
    #: the column sets that are unique besides the primary key (unique constraints and unique
    #: indexes): a link on one of them is one-to-one (a profile table per user)
    unique_keys: list[list[str]] = field(default_factory=list)

    @property
    def qualified_name(self) -> str:
        return qualified(self.schema, self.name)


LINK_KINDS = ("declared", "inferred", "manifest")


@dataclass
class Link:
    """How rows of `table` belong to rows of `ref_table`: `table.columns` hold values of
    `ref_table.ref_columns`. Chains of links tie a table to the data subjects (order_item -> order
    -> member). Table names are qualified (`qualified()`).

    `kind`: "declared" (a foreign key), "inferred" (column names and values say so) or "manifest"
    (the manifest's `links:`). `evidence` is what an approver reads, never a value: for an inferred
    link {"rule": which name rule matched, "non_null": values checked, "matched": how many are keys
    of ref_table, "containment": matched / non_null}; for a declared one {"constraint": name} when
    known; for a manifest one {"reason": the manifest's reason}."""

    table: str
    columns: list[str]
    ref_table: str
    ref_columns: list[str]
    kind: str = "declared"
    evidence: dict[str, Any] = field(default_factory=dict)
    #: ON DELETE of a declared foreign key (see ForeignKey.on_delete)
    on_delete: str | None = None

    def describe(self) -> str:
        """`table(columns) -> ref_table(ref_columns)`: names only."""
        return f"{self.table}({', '.join(self.columns)}) -> {self.ref_table}({', '.join(self.ref_columns)})"


@dataclass
class SourceInventory:
    source_id: str
    dialect: str
    tables: list[TableInfo]
    #: how tables' rows refer to each other: declared foreign keys, inferred and manifest links
    #: (`dereg.inventory.links`); rejected links are not here
    links: list[Link] = field(default_factory=list)
    #: the link candidates turned down (by values, an empty column, or the manifest), for the
    #: reports and `dereg init`: [{"link": Link.describe(), "evidence", "accepted", "reason",
    #: "decided_by"}] (`dereg.inventory.links.LinkCandidate.to_dict`); names and counts only
    rejected_links: list[dict[str, Any]] = field(default_factory=list)

    def table(self, name: str) -> TableInfo:
        """The table shown as `name`: `schema.table`, or the bare name in the default schema (a
        bare name never finds a same-named table of another schema)."""
        for t in self.tables:
            if name == t.qualified_name:
                return t
        raise KeyError(f"source {self.source_id} has no table {name}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceInventory:
        tables = []
        for t in data["tables"]:
            tables.append(
                TableInfo(
                    name=t["name"],
                    schema=t.get("schema"),
                    columns=[ColumnInfo(**c) for c in t["columns"]],
                    primary_key=list(t["primary_key"]),
                    foreign_keys=[ForeignKey(**fk) for fk in t.get("foreign_keys", [])],
                    row_count=t.get("row_count", 0),
                    problem=t.get("problem"),
                    partition_of=t.get("partition_of"),
                    partitioned=bool(t.get("partitioned", False)),
                    unique_keys=[list(k) for k in t.get("unique_keys", [])],
                )
            )
        return cls(
            source_id=data["source_id"],
            dialect=data["dialect"],
            tables=tables,
            links=[Link(**link) for link in data.get("links", [])],
            rejected_links=[dict(x) for x in data.get("rejected_links", [])],
        )


@dataclass
class ColumnFinding:
    """What classification concluded about one column."""

    table: str
    column: str
    categories: list[str]  # taxonomy ids, e.g. ["cn_resident_id"]; [] when not personal
    level: str | None  # "sensitive" | "general" | None
    values_checked: int = 0
    matches: int = 0
    masked_examples: list[str] = field(default_factory=list)
    reason: str = ""
    #: the manifest's reason when an override pinned this column, else None
    override: str | None = None
    type: str = ""

    @property
    def personal(self) -> bool:
        return bool(self.categories)

    @property
    def match_ratio(self) -> float:
        return round(self.matches / self.values_checked, 4) if self.values_checked else 0.0


@dataclass
class ClassificationResult:
    source_id: str
    columns: list[ColumnFinding]
    minors: int = 0
    subjects: int = 0
    #: "sample" (values spread over each table) or "full" (every value read)
    mode: str = "sample"
    sample_size: int = 0
    #: tables that could not be classified: [{"table": ..., "reason": ...}]
    problems: list[dict[str, str]] = field(default_factory=list)

    def personal_columns(self, table: str) -> list[ColumnFinding]:
        return [c for c in self.columns if c.table == table and c.personal]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassificationResult:
        return cls(
            source_id=data["source_id"],
            columns=[ColumnFinding(**c) for c in data["columns"]],
            minors=data.get("minors", 0),
            subjects=data.get("subjects", 0),
            mode=data.get("mode", "sample"),
            sample_size=data.get("sample_size", 0),
            problems=list(data.get("problems", [])),
        )
