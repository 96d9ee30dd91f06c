"""Migrations across schemas, data types, key shapes and ALTER kinds, with checksum repair
OFF so any lost, stale or duplicated write fails loudly.

Each case builds `t` and a `mirror` with the same schema and the same seed rows. At the
`copy_start` fault point and after every chunk, one transaction inserts, updates (also the
primary key) and deletes rows of BOTH tables, so changes reach the new table through the
binlog while the copy runs. Keys are indices into a case-specific key function: seed rows
take the even indices, fresh inserts the odd ones (between existing keys, on both sides of
the copier) and indices above the seed range (ahead of the copier). After the run, `t`
must equal `mirror` row for row on the columns both have (renames mapped), have the schema
the server gives the same ALTER, and the original must be kept as its old table.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeAlias

import pymysql.connections
import pymysql.err
import pytest
from helpers import connect, tables
from workload import commit_replaying, q

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.migration import migrate

Key = tuple[Any, ...]
Conn: TypeAlias = pymysql.connections.Connection

# Several chunks for a few hundred rows; quick checkpoints so those paths run too.
TUNING = Tuning(chunk_rows_initial=40, chunk_rows_min=10, chunk_rows_max=80,
                progress_interval=1.0, checkpoint_interval=0.3)



@dataclass(frozen=True)
class Case:
    id: str
    ddl: str                                   # CREATE TABLE {t} (...)
    pk: tuple[str, ...]
    others: tuple[str, ...]                    # the non-key columns the writers set
    key: Callable[[int], Key]                  # index -> primary key values
    values: Callable[[int, int], Key]          # (index, version) -> values of `others`
    alter: str
    seed: int = 800                            # seed rows take indices 0, 2, ..., 2*(seed-1)
    table: str = "t"
    renames: dict[str, str] = field(default_factory=dict)     # old name -> new name
    dropped: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)    # added column -> every row's value
    types: dict[str, str] = field(default_factory=dict)       # new column -> COLUMN_TYPE
    indexes: tuple[str, ...] = ()                             # index names the ALTER adds
    # Case-insensitive keys: also change only the case of keys (the same key to the server).
    recase: bool = False
    # Case-sensitive keys: index -> the index whose key differs only by case, or None.
    sibling: Callable[[int], int | None] | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.pk, *self.others)

    def new_name(self, column: str) -> str:
        return self.renames.get(column, column)

    def row(self, index: int, version: int) -> Key:
        return (*self.key(index), *self.values(index, version))


# --- the plain integer-keyed table most ALTER kinds run on -----------------------------------

INT_DDL = ("CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, "
           "name VARCHAR(32) CHARACTER SET utf8mb4 NULL, v INT NOT NULL DEFAULT 0, "
           "data VARBINARY(32) NULL, note TEXT CHARACTER SET utf8mb4 NULL) "
           "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
INT_COLS = ("name", "v", "data", "note")


def int_key(i: int) -> Key:
    return (i + 1,)


def int_values(i: int, ver: int) -> Key:
    # Unique per (index, version): a UNIQUE key on `name` must never be violated.
    name = f"n{i}-{ver}\u00e9"
    note = None if (i + ver) % 5 == 0 else f"note {i % 17} \U0001F600 v{ver}"
    return name, i * 3 + ver, bytes([i % 256, 0, 255, ver % 256]), note


def int_case(id: str, alter: str, **kw: Any) -> Case:
    return Case(id=id, ddl=INT_DDL, pk=("id",), others=INT_COLS, key=int_key,
                values=int_values, alter=alter, **kw)


# --- data types -------------------------------------------------------------------------------

NULLS_DDL = ("CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, a INT NULL, b VARCHAR(20) NULL, "
             "c DATETIME(6) NULL, d DECIMAL(10,2) NULL, e BLOB NULL, f DOUBLE NULL, "
             "g TEXT NULL, h DATE NULL, j ENUM('x','y','z') NULL, k TIME NULL, "
             "m BIGINT UNSIGNED NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
NULLS_COLS = ("a", "b", "c", "d", "e", "f", "g", "h", "j", "k", "m")


def nulls_values(i: int, ver: int) -> Key:
    full = (i * 7 - 500, f"b{i}.{ver}", datetime(2020, 1, 1) + timedelta(seconds=i * 977 + ver),
            Decimal(i) / 4, bytes([i % 256]) * 3, i / 7, f"g{ver}",
            date(2000, 1, 1) + timedelta(days=i), "xyz"[i % 3],
            timedelta(seconds=i * 61), 2**64 - 1 - i)
    if (i + ver) % 3 == 0:
        return (None,) * len(full)             # NULL in every nullable column
    return tuple(None if (i + ver + n) % 4 == 0 else v for n, v in enumerate(full))


TEXTS = ["\U0001F600", "\u6f22\u5b57\u30c6\u30b9\u30c8", "\u03a9\u03bc\u03ad\u03b3\u03b1",
         "e\u0301", "\U0001D11E music", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
         "", " ", "it's \"quoted\" \\ back", "\ud55c\uad6d\uc5b4 \U0001F680\U0001F525",
         "\u0000nul inside", "tab\tnew\nline"]

UTF8_DDL = ("CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, "
            "s VARCHAR(64) CHARACTER SET utf8mb4 NULL, "
            "tx TEXT CHARACTER SET utf8mb4 NULL, "
            "c CHAR(8) CHARACTER SET utf8mb4 NULL, "
            "bs VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL) "
            "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")


def utf8_values(i: int, ver: int) -> Key:
    a, b = TEXTS[i % len(TEXTS)], TEXTS[(i + ver) % len(TEXTS)]
    return (f"{a}{i}{b}", (a + b) * (1 + i % 20) + f"#{ver}", "\U0001F600\u6f22" + str(i % 99),
            b + "\u00c9" if i % 2 else b + "\u00e9")


BINARY_DDL = ("CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, vb VARBINARY(64) NULL, "
              "bl BLOB NULL, bn BINARY(8) NULL, lb LONGBLOB NULL) ENGINE=InnoDB")
BYTES = [b"\x00", b"\xff", b"\x00\x00\x00", b"\xff\xfe\x00\x01", b"trailing  ", b"\x00lead",
         b"tail\x00", b"", bytes(range(256)), b"\x80\x81\xc0\xc1\xf5\xff", b"'\\\"%_"]


def binary_values(i: int, ver: int) -> Key:
    a, b = BYTES[i % len(BYTES)], BYTES[(i + ver) % len(BYTES)]
    rnd = random.Random(i * 1000 + ver).randbytes(i % 40)
    return ((a + rnd)[:64], b * (1 + i % 5) + rnd, (b + rnd)[:8], rnd * 50 + a)


NUMERIC_DDL = ("CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, amount DECIMAL(20,6) NOT NULL, "
               "at DATETIME(6) NOT NULL, ratio DOUBLE NOT NULL, maybe DECIMAL(20,6) NULL) "
               "ENGINE=InnoDB")
DECIMALS = ["99999999999999.999999", "-99999999999999.999999", "0.000001", "-0.000001", "0",
            "12345678.901234", "1", "-1.5"]
DOUBLES = [0.1, -0.0, 1.7976931348623157e308, -2.2250738585072014e-308, 5e-324,
           3.141592653589793, 1e-10, -123456789.125, 2.0**53 + 1]
DATETIMES = [datetime(1000, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999),
             datetime(2024, 2, 29, 12, 34, 56, 123456), datetime(1970, 1, 1, 0, 0, 0, 1)]


def numeric_values(i: int, ver: int) -> Key:
    at = DATETIMES[i % len(DATETIMES)]
    if i % len(DATETIMES) > 1:
        at += timedelta(microseconds=i * 1_000_003 + ver)
    return (Decimal(DECIMALS[(i + ver) % len(DECIMALS)]), at,
            DOUBLES[(i + ver) % len(DOUBLES)] * (1 if i % 2 else -1),
            None if i % 3 == 0 else Decimal(i * 1001 + ver) / 1_000_000)


# --- key shapes -------------------------------------------------------------------------------

COMPOSITE_DDL = ("CREATE TABLE {t} (a INT NOT NULL, b VARCHAR(16) CHARACTER SET utf8mb4 "
                 "NOT NULL, v INT NULL, note VARCHAR(40) CHARACTER SET utf8mb4 NULL, "
                 "PRIMARY KEY (a, b)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
SUFFIXES = ["", "a", "a\u00e9b", "b\U0001F600"]


def composite_key(i: int) -> Key:
    return (i // 4 - 30, SUFFIXES[i % 4])


def small_values(i: int, ver: int) -> Key:
    return (i * 10 + ver, f"r{i} v{ver} \u2603")


VARCHAR_BIN_DDL = ("CREATE TABLE {t} (k VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin "
                   "NOT NULL PRIMARY KEY, v INT NULL, note VARCHAR(40) CHARACTER SET utf8mb4 "
                   "NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")


def varchar_bin_key(i: int) -> Key:
    """Seed keys (even i) include pairs that differ only by case: key00001 / Key00001."""
    base = f"key{i // 4:05d}"
    return ((base, base.upper(), base.title(), base + "\U0001F600")[i % 4],)


def varchar_bin_sibling(i: int) -> int | None:
    return i + 1 if i % 4 == 0 else None       # key00001 -> KEY00001


VARCHAR_CI_DDL = ("CREATE TABLE {t} (k VARCHAR(32) CHARACTER SET utf8mb4 NOT NULL PRIMARY KEY, "
                  "v INT NULL, note VARCHAR(40) CHARACTER SET utf8mb4 NULL) "
                  "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")


def varchar_ci_key(i: int) -> Key:
    """Distinct ignoring case and accents, but mixed case, so byte order differs from the
    collation's order ('B..' < 'a..' in bytes, 'a..' < 'B..' in the collation)."""
    text = f"{chr(97 + i % 26)}{i:05d}\u00e9"
    return (text.upper() if (i // 2) % 3 == 0 else text,)


GAPS_DDL = ("CREATE TABLE {t} (id BIGINT NOT NULL PRIMARY KEY, v INT NULL, "
            "note VARCHAR(40) CHARACTER SET utf8mb4 NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
GAP_LEVELS = [1, 10**9, 10**12, 10**15, 10**18]
UNSIGNED_DDL = GAPS_DDL.replace("BIGINT NOT NULL", "BIGINT UNSIGNED NOT NULL")
UNSIGNED_LEVELS = [0, 2**31, 2**32, 2**62, 2**63, 2**64 - 10**6]


def gap_key(levels: Sequence[int]) -> Callable[[int], Key]:
    return lambda i: (levels[i % len(levels)] + i // len(levels),)


ADD_EXTRA = "ADD COLUMN extra INT NOT NULL DEFAULT 5"

CASES = [
    int_case("empty_table", ADD_EXTRA, seed=0, defaults={"extra": 5}),
    int_case("one_row", ADD_EXTRA, seed=1, defaults={"extra": 5}),
    Case("nulls_everywhere", NULLS_DDL, ("id",), NULLS_COLS, int_key, nulls_values,
         "ADD COLUMN extra VARCHAR(8) NULL", defaults={"extra": None}),
    Case("utf8mb4_text", UTF8_DDL, ("id",), ("s", "tx", "c", "bs"), int_key, utf8_values,
         "MODIFY COLUMN s VARCHAR(128) CHARACTER SET utf8mb4 NULL",
         types={"s": "varchar(128)"}),
    Case("binary_data", BINARY_DDL, ("id",), ("vb", "bl", "bn", "lb"), int_key, binary_values,
         "ADD COLUMN extra INT NULL, MODIFY COLUMN vb VARBINARY(100) NULL",
         types={"vb": "varbinary(100)"}),
    Case("decimal_datetime_double", NUMERIC_DDL, ("id",), ("amount", "at", "ratio", "maybe"),
         int_key, numeric_values, "ADD INDEX idx_at (at)", indexes=("idx_at",)),
    Case("composite_pk_int_varchar", COMPOSITE_DDL, ("a", "b"), ("v", "note"), composite_key,
         small_values, "ADD COLUMN extra INT NOT NULL DEFAULT 1, ADD INDEX idx_v (v)",
         defaults={"extra": 1}, indexes=("idx_v",)),
    Case("varchar_pk_bin_case_pairs", VARCHAR_BIN_DDL, ("k",), ("v", "note"), varchar_bin_key,
         small_values, "ADD COLUMN extra INT NOT NULL DEFAULT 1, ADD INDEX idx_v (v)",
         defaults={"extra": 1}, indexes=("idx_v",), sibling=varchar_bin_sibling),
    Case("varchar_pk_default_ci", VARCHAR_CI_DDL, ("k",), ("v", "note"), varchar_ci_key,
         small_values, "ADD COLUMN extra INT NOT NULL DEFAULT 1, MODIFY COLUMN v BIGINT NULL",
         defaults={"extra": 1}, types={"v": "bigint(20)"}, recase=True),
    int_case("add_column_with_default",
             "ADD COLUMN extra VARCHAR(16) NOT NULL DEFAULT 'dflt', ADD COLUMN n2 INT NULL",
             defaults={"extra": "dflt", "n2": None}),
    int_case("drop_column", "DROP COLUMN note", dropped=("note",)),
    int_case("add_index", "ADD INDEX idx_v (v), ADD UNIQUE INDEX uq_name (name)",
             indexes=("idx_v", "uq_name")),
    int_case("modify_column_type",
             "MODIFY COLUMN v BIGINT NOT NULL DEFAULT 0, "
             "MODIFY COLUMN name VARCHAR(64) CHARACTER SET utf8mb4 NULL",
             types={"v": "bigint(20)", "name": "varchar(64)"}),
    int_case("rename_column", "RENAME COLUMN v TO v2", renames={"v": "v2"},
             types={"v2": "int(11)"}),
    int_case("change_column", "CHANGE name label VARCHAR(48) CHARACTER SET utf8mb4 NULL",
             renames={"name": "label"}, types={"label": "varchar(48)"}),
    int_case("swap_two_column_names", "RENAME COLUMN name TO note, RENAME COLUMN note TO name",
             renames={"name": "note", "note": "name"},
             types={"note": "varchar(32)", "name": "text"}),
    int_case("several_clauses",
             "ADD COLUMN extra INT NOT NULL DEFAULT 3, DROP COLUMN note, "
             "ADD INDEX idx_data (data), MODIFY COLUMN data VARBINARY(64) NULL, "
             "CHANGE name label VARCHAR(64) CHARACTER SET utf8mb4 NULL, "
             "RENAME COLUMN v TO v2",
             renames={"name": "label", "v": "v2"}, dropped=("note",), defaults={"extra": 3},
             types={"data": "varbinary(64)", "label": "varchar(64)", "v2": "int(11)"},
             indexes=("idx_data",)),
    int_case("reserved_word_table_name", ADD_EXTRA, table="order", defaults={"extra": 5}),
    int_case("table_name_with_space_and_backtick", ADD_EXTRA, table="my `odd` table",
             defaults={"extra": 5}),
    Case("key_space_with_gaps", GAPS_DDL, ("id",), ("v", "note"), gap_key(GAP_LEVELS),
         small_values, "MODIFY COLUMN v BIGINT NULL", types={"v": "bigint(20)"}),
    Case("unsigned_key_space_with_gaps", UNSIGNED_DDL, ("id",), ("v", "note"),
         gap_key(UNSIGNED_LEVELS), small_values, ADD_EXTRA, defaults={"extra": 5}),
]


# --- the writer -------------------------------------------------------------------------------


class Writer:
    """Each call commits ONE transaction that changes `table` and `mirror` identically.

    It keeps its own model of which key indices exist, so every statement is known to
    succeed: inserts between existing keys and above them, updates near both ends of the
    key space, primary key moves up and down, deletes, and re-inserts of deleted keys (in
    the same transaction and in a later one).
    """

    def __init__(self, conn: Conn, case: Case) -> None:
        self.conn, self.case = conn, case
        self.rng = random.Random(case.id)
        self.present = set(range(0, 2 * case.seed, 2))
        self.gaps = list(range(1, 2 * case.seed, 2))
        self.rng.shuffle(self.gaps)
        self.top = 2 * case.seed
        self.deleted: list[int] = []
        self.version = 0
        self.calls: dict[str, int] = {}
        self.statements = 0
        self.retries = 0
        self.plan: list[tuple[str, Sequence[Any]]] = []   # the statements of one transaction

    def at(self, point: str, rounds: int = 1) -> Callable[[], None]:
        def callback() -> None:
            self.calls[point] = self.calls.get(point, 0) + 1
            self.transaction(rounds)
        return callback

    def transaction(self, rounds: int) -> None:
        self.plan = []
        for _ in range(rounds):
            self.round()
        self.retries += commit_replaying(self.conn, self.plan)

    def round(self) -> None:
        self.insert(self.fresh_gap())
        self.insert(self.fresh_top())
        if not self.present:
            return
        self.update(self.pick("low"))
        self.update(self.pick("high"))
        self.update(self.pick("any"))
        self.move(self.pick("high"), self.fresh_gap())    # a key moves down (or anywhere)
        self.move(self.pick("low"), self.fresh_top())     # a key moves above the copier
        if self.deleted:
            self.insert(self.deleted.pop(0))              # re-insert an earlier delete
        if len(self.present) > 2:
            self.delete(self.pick("any"))
            again = self.pick("any")
            self.delete(again)
            self.insert(again)                            # delete + re-insert, same trx
            self.delete(self.pick("high"))                # a later call re-inserts it
        if self.case.recase:
            self.recase(self.pick("low"))
            self.recase(self.pick("high"))
            again = self.pick("any")
            self.delete(again)
            self.insert(again, swapcase=True)             # same key, other bytes
        if self.case.sibling:
            self.move_to_sibling()

    # Key choice: the ends of the key space in the case's own key order (Python's order
    # approximates the server's; what matters is hitting both sides of the copier).
    def pick(self, where: str) -> int:
        ordered = sorted(self.present, key=self.case.key)
        tenth = max(1, len(ordered) // 10)
        pool = {"low": ordered[:tenth], "high": ordered[-tenth:], "any": ordered}[where]
        return self.rng.choice(pool)

    def fresh_gap(self) -> int:
        return self.gaps.pop() if self.gaps else self.fresh_top()

    def fresh_top(self) -> int:
        self.top += 1
        return self.top

    def next_version(self) -> int:
        self.version += 1
        return self.version

    def both(self, template: str, params: Sequence[Any]) -> None:
        for name in (self.case.table, "mirror"):
            self.plan.append((template.format(t=q(name)), params))
        self.statements += 1

    def insert(self, index: int, swapcase: bool = False) -> None:
        cols = ", ".join(q(c) for c in self.case.columns)
        marks = ", ".join(["%s"] * len(self.case.columns))
        key = self.case.key(index)
        self.both(f"INSERT INTO {{t}} ({cols}) VALUES ({marks})",
                  [*(swapped(key) if swapcase else key),
                   *self.case.values(index, self.next_version())])
        self.present.add(index)
        if index in self.deleted:
            self.deleted.remove(index)

    def update(self, index: int) -> None:
        sets = ", ".join(f"{q(c)} = %s" for c in self.case.others)
        self.both(f"UPDATE {{t}} SET {sets} WHERE {self.where()}",
                  [*self.case.values(index, self.next_version()), *self.case.key(index)])

    def move(self, index: int, to: int) -> None:
        sets = ", ".join(f"{q(c)} = %s" for c in self.case.pk)
        self.both(f"UPDATE {{t}} SET {sets} WHERE {self.where()}",
                  [*self.case.key(to), *self.case.key(index)])
        self.present.discard(index)
        self.present.add(to)

    def recase(self, index: int) -> None:
        """Change only the case of a key: under a case-insensitive collation the row keeps
        its key, but the binlog shows a delete of one byte string and an insert of another."""
        sets = ", ".join(f"{q(c)} = %s" for c in self.case.pk)
        key = self.case.key(index)
        self.both(f"UPDATE {{t}} SET {sets} WHERE {self.where()}", [*swapped(key), *key])

    def move_to_sibling(self) -> None:
        """Move a key to the key that differs from it only by case (a different key here)."""
        sibling = self.case.sibling
        assert sibling is not None
        free = set(self.gaps)
        for index in sorted(self.present, key=lambda _: self.rng.random()):
            to = sibling(index)
            if to is not None and to in free:
                self.gaps.remove(to)
                self.move(index, to)
                return

    def delete(self, index: int) -> None:
        self.both(f"DELETE FROM {{t}} WHERE {self.where()}", self.case.key(index))
        self.present.discard(index)
        self.deleted.append(index)

    def where(self) -> str:
        return " AND ".join(f"{q(c)} = %s" for c in self.case.pk)


def swapped(key: Key) -> Key:
    return tuple(v.swapcase() if isinstance(v, str) else v for v in key)


# --- checks -----------------------------------------------------------------------------------


def select(conn: Conn, table: str, columns: Sequence[str], order: Sequence[str]
           ) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(q(c) for c in columns)} FROM {q(table)} "
                    f"ORDER BY {', '.join(q(c) for c in order)}")
        return list(cur.fetchall())


def assert_same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]], what: str,
                key_len: int) -> None:
    if got == want:
        return
    got_by = {r[:key_len]: r for r in got}
    want_by = {r[:key_len]: r for r in want}
    missing = [k for k in want_by if k not in got_by][:5]
    extra = [k for k in got_by if k not in want_by][:5]
    stale = [(got_by[k], want_by[k]) for k in want_by if k in got_by
             and got_by[k] != want_by[k]][:3]
    raise AssertionError(f"{what}: {len(got)} rows vs {len(want)} in the mirror; missing "
                         f"keys {missing}; extra keys {extra}; differing (got, want) {stale}")


def schema(conn: Conn, db: str, table: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with conn.cursor() as cur:
        cur.execute("SELECT COLUMN_NAME, ORDINAL_POSITION, COLUMN_DEFAULT, IS_NULLABLE, "
                    "COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, EXTRA "
                    "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                    "AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (db, table))
        columns = list(cur.fetchall())
        cur.execute("SELECT INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE, SUB_PART "
                    "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
                    "AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX", (db, table))
        indexes = list(cur.fetchall())
    return columns, indexes



def seed(conn: Conn, case: Case) -> None:
    with conn.cursor() as cur:
        for name in (case.table, "mirror"):
            cur.execute(case.ddl.format(t=q(name)))
            rows = [case.row(i, 0) for i in range(0, 2 * case.seed, 2)]
            if rows:
                cols = ", ".join(q(c) for c in case.columns)
                marks = ", ".join(["%s"] * len(case.columns))
                cur.executemany(f"INSERT INTO {q(name)} ({cols}) VALUES ({marks})", rows)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_migrate_schema_case(server: Dsn, db: str, case: Case) -> None:
    conn = connect(server, db)
    writes = connect(server, db, autocommit=False)
    try:
        seed(conn, case)
        writer = Writer(writes, case)
        faults.register("copy_start", writer.at("copy_start", rounds=3))
        faults.register("after_chunk", writer.at("after_chunk", rounds=2))
        result = migrate(MigrationConfig(dsn=server, database=db, table=case.table,
                                         alter=case.alter, repair=False, tuning=TUNING))
        faults.clear()

        assert writer.calls.get("copy_start") == 1
        assert writer.calls.get("after_chunk", 0) >= (5 if case.seed >= 100 else 1), writer.calls
        kept = [c for c in case.columns if c not in case.dropped]
        new_cols = [case.new_name(c) for c in kept]
        new_pk = [case.new_name(c) for c in case.pk]
        mirror = select(conn, "mirror", kept, case.pk)
        assert len(mirror) >= case.seed
        assert_same(select(conn, case.table, new_cols, new_pk), mirror,
                    f"{case.table} after the migration", len(case.pk))
        old = result.old_table
        assert tables(conn) == {case.table, "mirror", old, "_onlineddl_old_tables"}
        # Every write committed before the cutover, so the original holds them all too.
        assert_same(select(conn, old, case.columns, case.pk),
                    select(conn, "mirror", case.columns, case.pk), old, len(case.pk))
        check_schema(conn, db, case)
    finally:
        writes.close()
        conn.close()


def check_schema(conn: Conn, db: str, case: Case) -> None:
    """The new schema is what the server makes of the same ALTER, and what the case says."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE expected LIKE mirror")
        cur.execute(f"ALTER TABLE expected {case.alter}")
    got_cols, got_idx = schema(conn, db, case.table)
    want_cols, want_idx = schema(conn, db, "expected")
    assert got_cols == want_cols
    assert got_idx == want_idx
    types = {r[0]: r[4] for r in got_cols}
    for column, column_type in case.types.items():
        assert types.get(column) == column_type, (column, types)
    for column in (*case.dropped, *(o for o in case.renames if o not in case.renames.values())):
        assert column not in types, f"{column} should be gone: {types}"
    assert {r[0] for r in got_idx} >= set(case.indexes)
    with conn.cursor() as cur:
        for column, value in case.defaults.items():
            cur.execute(f"SELECT COUNT(*) FROM {q(case.table)} WHERE NOT ({q(column)} <=> %s)",
                        (value,))
            assert cur.fetchone()[0] == 0, f"{column} is not {value!r} in every row"
