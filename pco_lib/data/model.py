"""The data model: the canonical tables, their columns and kinds (one :class:`Table` per table in
:data:`TABLES`). Validation (:mod:`.checks`), reading (:mod:`.source`) and the sample business all follow it.
"""

from __future__ import annotations

from dataclasses import dataclass

ID, TIMESTAMP, STRING, FLOAT, INT, BOOL = "id", "timestamp", "string", "float", "int", "bool"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # one of ID, TIMESTAMP, STRING, FLOAT, INT, BOOL
    required: bool = True
    nullable: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # columns that identify a row (checked for duplicates)
    doc: str = ""
    required: bool = False  # a data folder must hold this table

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        Table(
            "customers",
            (
                Column("customer_id", ID),
                Column("converted_at", TIMESTAMP, doc="signup or first purchase, UTC"),
                Column("channel", STRING, required=False, nullable=True),
                Column("country", STRING, required=False, nullable=True),
                Column("device", STRING, required=False, nullable=True),
            ),
            key=("customer_id",),
            doc="One row per customer. Extra columns are kept and can serve as segments.",
            required=True,
        ),
        Table(
            "orders",
            (
                Column("order_id", ID),
                Column("customer_id", ID),
                Column("ordered_at", TIMESTAMP),
                Column("revenue", FLOAT, doc=">= 0, one currency"),
            ),
            key=("order_id",),
            doc="One row per order.",
            required=True,
        ),
        Table(
            "subscriptions",
            (
                Column("customer_id", ID),
                Column("started_at", TIMESTAMP),
                Column("ended_at", TIMESTAMP, nullable=True, doc="empty = still active"),
                Column("plan", STRING, required=False, nullable=True),
                Column("mrr", FLOAT, required=False, nullable=True),
            ),
            key=("customer_id", "started_at"),
            doc="Contractual businesses: one row per subscription.",
        ),
        Table(
            "events",
            (
                Column("customer_id", ID),
                Column("occurred_at", TIMESTAMP),
                Column("event", STRING),
            ),
            key=(),
            doc="Optional activity stream (logins, feature use, e-mail opens).",
        ),
        Table(
            "assignments",
            (
                Column("experiment_id", ID),
                Column("customer_id", ID),
                Column("variant", STRING),
                Column("assigned_at", TIMESTAMP),
            ),
            key=("experiment_id", "customer_id"),
            doc="One row per customer and experiment.",
        ),
        Table(
            "experiments",
            (
                Column("experiment_id", ID),
                Column("variant", STRING),
                Column("weight", FLOAT, doc="planned share of traffic"),
                Column("is_control", BOOL),
            ),
            key=("experiment_id", "variant"),
            doc="The planned split of each experiment, for SRM checks and readouts.",
        ),
        Table(
            "surveys",
            (
                Column("customer_id", ID),
                Column("answered_at", TIMESTAMP),
                Column("nps", INT, doc="0-10"),
                Column("csat", INT, required=False, nullable=True, doc="1-5"),
            ),
            key=("customer_id", "answered_at"),
            doc="NPS (and optionally CSAT) answers.",
        ),
        Table(
            "leads",
            (
                Column("lead_id", ID),
                Column("created_at", TIMESTAMP),
                Column("source", STRING),
                Column("customer_id", ID, nullable=True, doc="empty until the lead converts"),
            ),
            key=("lead_id",),
            doc="Leads and, once they convert, their customer.",
        ),
    ]
}
FILE_SUFFIXES = (".parquet", ".csv")
