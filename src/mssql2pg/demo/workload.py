"""A seeded, random OLTP workload on the emulated SQL Server source, with a cross-table invariant.

Three tables: ``dbo.customers`` (balance), ``dbo.orders`` (total) and ``dbo.order_lines`` (composite key).
Every transaction keeps ``sum(customers.balance) + sum(orders.total)`` equal to :data:`TOTAL_MONEY`, so a
reader of the *target* that ever sees a different sum has seen part of a source transaction. The mix covers
what replication gets wrong: multi-row statements, multi-table transactions, updates, deletes, primary-key
updates, delete-and-reinsert of one key, and rolled-back transactions (which must never appear).

The demo, the exactly-once tests and the benchmarks all use it, with a seed that is printed so a failure can
be replayed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pg8000.native

from mssql2pg.identifiers import qualified, quote_ident

TOTAL_MONEY = Decimal("1000000.00")
N_CUSTOMERS = 50

SCHEMA_SQL = [
    "CREATE SCHEMA IF NOT EXISTS dbo",
    """CREATE TABLE dbo.customers (
        id int PRIMARY KEY,
        name varchar(100) NOT NULL,
        email varchar(200),
        balance numeric(12,2) NOT NULL,
        updated_at timestamp NOT NULL DEFAULT localtimestamp)""",
    """CREATE TABLE dbo.orders (
        id bigint PRIMARY KEY,
        customer_id int NOT NULL,
        total numeric(12,2) NOT NULL,
        status varchar(20) NOT NULL,
        note text,
        created_at timestamp NOT NULL DEFAULT localtimestamp)""",
    """CREATE TABLE dbo.order_lines (
        order_id bigint NOT NULL,
        line_no int NOT NULL,
        product varchar(50) NOT NULL,
        qty int NOT NULL,
        PRIMARY KEY (order_id, line_no))""",
]
TABLES = ("dbo.customers", "dbo.orders", "dbo.order_lines")


def create_schema(conn: pg8000.native.Connection) -> None:
    """Create the three tables, seed the customers and enable CDC on the database and each table."""
    conn.run("BEGIN")
    for stmt in SCHEMA_SQL:
        conn.run(stmt)
    conn.run("COMMIT")
    conn.run("CALL sys.sp_cdc_enable_db()")
    for table in ("customers", "orders", "order_lines"):
        conn.run(
            "CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => :t, role_name => NULL)",
            t=table,
        )
    share = TOTAL_MONEY / N_CUSTOMERS
    conn.run("BEGIN")
    for i in range(1, N_CUSTOMERS + 1):
        conn.run(
            "INSERT INTO dbo.customers (id, name, email, balance) VALUES (:i, :n, :e, :b)",
            i=i,
            n=f"Customer {i}",
            e=f"c{i}@example.com",
            b=share,
        )
    conn.run("COMMIT")


@dataclass
class Workload:
    """Runs random transactions against the source. ``step()`` runs one; counters say what was done."""

    conn: pg8000.native.Connection
    seed: int
    rng: random.Random = field(init=False)
    next_order_id: int = 1
    committed: int = 0
    rolled_back: int = 0
    statements: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - a test workload, not cryptography
        # the server-side random() that picks rows to change follows the same seed, so a run can be replayed
        self.conn.run("SELECT setseed(:s)", s=self.rng.random() * 2 - 1)
        row = self.conn.run("SELECT coalesce(max(id), 0) + 1 FROM dbo.orders")
        self.next_order_id = int(row[0][0])

    def _run(self, sql: str, **params: Any) -> list[list[Any]]:
        self.statements += 1
        result: list[list[Any]] = self.conn.run(sql, **params)
        return result

    def step(self) -> str:
        """Run one transaction of a randomly chosen kind and return its name."""
        kinds: list[tuple[str, Callable[[], None], int]] = [
            ("purchase", self._purchase, 40),
            ("bulk_purchase", self._bulk_purchase, 5),
            ("change_order", self._change_order, 15),
            ("refund", self._refund, 10),
            ("renumber_line", self._renumber_line, 8),
            ("reinsert_line", self._reinsert_line, 8),
            ("rename_customers", self._rename_customers, 6),
            ("rollback", self._purchase_rolled_back, 8),
        ]
        name, fn, _ = self.rng.choices(kinds, weights=[k[2] for k in kinds])[0]
        self._run("BEGIN")
        try:
            fn()
        except Exception:
            self._run("ROLLBACK")
            raise
        if name == "rollback":
            self._run("ROLLBACK")
            self.rolled_back += 1
        else:
            self._run("COMMIT")
            self.committed += 1
        return name

    def run(self, transactions: int) -> None:
        for _ in range(transactions):
            self.step()

    def _customer(self) -> int:
        return self.rng.randint(1, N_CUSTOMERS)

    def _money(self) -> Decimal:
        return Decimal(self.rng.randint(100, 20000)) / 100

    def _new_order(self, customer: int, total: Decimal, lines: int) -> None:
        oid = self.next_order_id
        self.next_order_id += 1
        self._run(
            "INSERT INTO dbo.orders (id, customer_id, total, status, note) VALUES (:o, :c, :t, 'new', :n)",
            o=oid,
            c=customer,
            t=total,
            n=self.rng.choice([None, "", "rush", "gift ☃", "𝄞 music"]),
        )
        for line in range(1, lines + 1):
            self._run(
                "INSERT INTO dbo.order_lines (order_id, line_no, product, qty) VALUES (:o, :l, :p, :q)",
                o=oid,
                l=line,
                p=f"sku-{self.rng.randint(1, 500)}",
                q=self.rng.randint(1, 9),
            )
        self._run(
            "UPDATE dbo.customers SET balance = balance - :t, updated_at = localtimestamp WHERE id = :c",
            t=total,
            c=customer,
        )

    def _purchase(self) -> None:
        self._new_order(self._customer(), self._money(), self.rng.randint(1, 4))

    def _purchase_rolled_back(self) -> None:
        self._new_order(self._customer(), self._money(), 2)

    def _bulk_purchase(self) -> None:
        """Many orders in one transaction, lines inserted by one multi-row statement."""
        customer = self._customer()
        count = self.rng.randint(5, 30)
        first = self.next_order_id
        self.next_order_id += count
        total = Decimal("1.00")
        self._run(
            "INSERT INTO dbo.orders (id, customer_id, total, status) "
            "SELECT g, :c, :t, 'bulk' FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) AS g",
            c=customer,
            t=total,
            a=first,
            b=first + count - 1,
        )
        self._run(
            "INSERT INTO dbo.order_lines (order_id, line_no, product, qty) "
            "SELECT g, 1, 'bulk-sku', 1 FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) AS g",
            a=first,
            b=first + count - 1,
        )
        self._run("UPDATE dbo.customers SET balance = balance - :t WHERE id = :c", t=total * count, c=customer)

    def _some_order(self) -> tuple[int, int, Decimal] | None:
        rows = self._run("SELECT id, customer_id, total FROM dbo.orders ORDER BY random() LIMIT 1")
        return (int(rows[0][0]), int(rows[0][1]), Decimal(rows[0][2])) if rows else None

    def _change_order(self) -> None:
        found = self._some_order()
        if found is None:
            return
        oid, customer, old = found
        new = self._money()
        self._run("UPDATE dbo.orders SET total = :t, status = 'changed' WHERE id = :o", t=new, o=oid)
        self._run("UPDATE dbo.customers SET balance = balance + :d WHERE id = :c", d=old - new, c=customer)

    def _refund(self) -> None:
        found = self._some_order()
        if found is None:
            return
        oid, customer, total = found
        self._run("DELETE FROM dbo.order_lines WHERE order_id = :o", o=oid)
        self._run("DELETE FROM dbo.orders WHERE id = :o", o=oid)
        self._run("UPDATE dbo.customers SET balance = balance + :t WHERE id = :c", t=total, c=customer)

    def _renumber_line(self) -> None:
        """A primary-key update (SQL Server captures it as delete + insert)."""
        rows = self._run("SELECT order_id, line_no FROM dbo.order_lines ORDER BY random() LIMIT 1")
        if not rows:
            return
        oid, line = rows[0]
        self._run(
            "UPDATE dbo.order_lines SET line_no = (SELECT max(line_no) + 1 FROM dbo.order_lines "
            "WHERE order_id = :o) WHERE order_id = :o AND line_no = :l",
            o=oid,
            l=line,
        )

    def _reinsert_line(self) -> None:
        """Delete a key and insert it again in one transaction: the row must survive."""
        rows = self._run("SELECT order_id, line_no, product FROM dbo.order_lines ORDER BY random() LIMIT 1")
        if not rows:
            return
        oid, line, product = rows[0]
        self._run("DELETE FROM dbo.order_lines WHERE order_id = :o AND line_no = :l", o=oid, l=line)
        self._run(
            "INSERT INTO dbo.order_lines (order_id, line_no, product, qty) VALUES (:o, :l, :p, :q)",
            o=oid,
            l=line,
            p=product + "-again",
            q=self.rng.randint(1, 9),
        )

    def _rename_customers(self) -> None:
        """One statement updating many rows."""
        low = self._customer()
        self._run(
            "UPDATE dbo.customers SET name = name || '.', email = NULLIF(email, '') WHERE id BETWEEN :a AND :b",
            a=low,
            b=min(low + 5, N_CUSTOMERS),
        )


def table_rows(conn: pg8000.native.Connection, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    """All rows of a table, as tuples of the given columns, ordered by all of them (for exact compares)."""
    schema, name = table.split(".")
    cols = ", ".join(quote_ident(c) for c in columns)
    rows = conn.run(f"SELECT {cols} FROM {qualified(schema, name)} ORDER BY {cols}")
    return [tuple(r) for r in rows]


TABLE_COLUMNS: dict[str, list[str]] = {
    "dbo.customers": ["id", "name", "email", "balance", "updated_at"],
    "dbo.orders": ["id", "customer_id", "total", "status", "note", "created_at"],
    "dbo.order_lines": ["order_id", "line_no", "product", "qty"],
}


def money_sum(conn: pg8000.native.Connection, schema: str = "dbo") -> Decimal:
    """The invariant: customers' balances plus orders' totals."""
    ident = quote_ident(schema)
    rows = conn.run(
        f"SELECT (SELECT coalesce(sum(balance), 0) FROM {ident}.customers) + "
        f"(SELECT coalesce(sum(total), 0) FROM {ident}.orders)"
    )
    return Decimal(rows[0][0])


def iter_steps(workload: Workload) -> Iterator[str]:
    while True:
        yield workload.step()
