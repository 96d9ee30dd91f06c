"""ALTERs that convert the columns of the key a run walks (keys.py).

The applier deletes and re-reads the new table's rows by the old table's key values. An
ALTER that keeps those values (INT -> BIGINT, a wider DECIMAL scale, DATE -> DATETIME,
TIMESTAMP <-> DATETIME, a longer VARCHAR, another collation) migrates like the native
ALTER, a row deleted during the drain included. One that changes them (fewer fractional
seconds or decimals, text to a number, VARCHAR to CHAR under a NO PAD collation) is not
walked: another shared key is, or the run is refused up front (exit 5, the table as it
was, nothing left behind). Without that refusal, a row deleted after the checksum stayed
in the new table and the run exited 0.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Conn, connect, tables

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import InvalidAlter
from onlineddl.migration import migrate

TUNING = Tuning(chunk_rows_initial=10, chunk_rows_min=5, chunk_rows_max=20)
ROWS = 40


def make(conn: Conn, key_type: str, values: list[str], extra: str = "") -> None:
    with conn.cursor() as cur:
        for t in ("t", "twin"):
            cur.execute(f"CREATE TABLE {t} (k {key_type} NOT NULL PRIMARY KEY, "
                        f"id INT NOT NULL, v INT NOT NULL{extra})")
            cur.executemany(f"INSERT INTO {t} (k, id, v) VALUES (%s, %s, 1)",
                            [(value, i) for i, value in enumerate(values)])


def rows(conn: Conn, table: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT k, id, v FROM {table} ORDER BY id")
        return list(cur.fetchall())


def shape(conn: Conn, table: str) -> str:
    with conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE {table}")
        return str(cur.fetchone()[1]).split("\n", 1)[1]


def delete_after_checksum(conn: Conn, victim: int) -> None:
    """At `after_checksum`: one row deleted and every row updated, on t and twin alike;
    the drain under the write block applies them (no checksum after it)."""
    def write() -> None:
        with conn.cursor() as cur:
            for t in ("t", "twin"):
                cur.execute(f"DELETE FROM {t} WHERE id = %s", (victim,))
                cur.execute(f"UPDATE {t} SET v = v + 6")
    faults.register("after_checksum", write)


KEPT = {   # the key's type, its values, the new type: values the server compares equal
    "int-bigint": ("INT", [str(i * 7) for i in range(ROWS)], "BIGINT"),
    "int-varchar": ("INT", [str(i * 7) for i in range(ROWS)], "VARCHAR(12)"),
    "decimal-wider-scale": ("DECIMAL(10,2)", [f"{i}.25" for i in range(ROWS)],
                            "DECIMAL(12,3)"),
    "date-datetime": ("DATE", [f"2020-01-{i % 28 + 1:02d}" if i < 28 else
                               f"2020-02-{i - 27:02d}" for i in range(ROWS)], "DATETIME"),
    "timestamp-datetime": ("TIMESTAMP(3)", [f"2020-01-01 00:{i:02d}:00.125"
                                            for i in range(ROWS)], "DATETIME(6)"),
    "varchar-longer-ci": ("VARCHAR(10) COLLATE utf8mb4_bin",
                          [f"k{i}" for i in range(ROWS)],
                          "VARCHAR(20) COLLATE utf8mb4_general_ci"),
    "varchar-char-pad": ("VARCHAR(10) COLLATE utf8mb4_bin", [f"k{i} " for i in range(ROWS)],
                         "CHAR(10) COLLATE utf8mb4_bin"),
}


@pytest.mark.parametrize("case", list(KEPT))
def test_a_key_whose_values_the_alter_keeps_migrates_like_native(server: Dsn, db: str,
                                                                 case: str) -> None:
    old, values, new = KEPT[case]
    conn = connect(server, db)
    make(conn, old, values)
    delete_after_checksum(conn, victim=17)
    try:
        migrate(MigrationConfig(dsn=server, database=db, table="t", alter=f"MODIFY k {new} "
                                "NOT NULL", repair=False, tuning=TUNING))
    finally:
        faults.clear()
    with conn.cursor() as cur:
        cur.execute(f"ALTER TABLE twin MODIFY k {new} NOT NULL")
    assert rows(conn, "t") == rows(conn, "twin")
    assert shape(conn, "t") == shape(conn, "twin")
    conn.close()


CHANGED = {   # the key's type, its values, the new type, what the refusal names
    "datetime-fewer-fractions": ("DATETIME(6)", [f"2020-01-01 00:{i:02d}:00.5"
                                                 for i in range(ROWS)], "DATETIME",
                                 "drops fractional seconds"),
    "decimal-fewer-decimals": ("DECIMAL(10,2)", [f"{i}.25" for i in range(ROWS)],
                               "DECIMAL(10,1)", "rounds it to fewer decimals"),
    "decimal-integer": ("DECIMAL(10,2)", [f"{i}.25" for i in range(ROWS)], "INT",
                        "converts it to another type"),
    "varchar-int": ("VARCHAR(10)", [f"0{i}" for i in range(ROWS)], "INT",
                    "converts it to another type"),
    "datetime-date": ("DATETIME", [f"2020-01-{i % 28 + 1:02d} 10:{i:02d}:00"
                                   for i in range(ROWS)], "DATE",
                      "converts it to another type"),
    "varchar-char-nopad": ("VARCHAR(10) COLLATE {nopad}", [f"k{i} " for i in range(ROWS)],
                           "CHAR(10) COLLATE {nopad}", "trailing spaces"),
    "varbinary-binary": ("VARBINARY(10)", [f"k{i}" for i in range(ROWS)], "BINARY(10)",
                         "pads it with zero bytes"),
}


@pytest.mark.parametrize("case", list(CHANGED))
def test_a_key_whose_values_the_alter_changes_is_refused(server: Dsn, db: str,
                                                          case: str) -> None:
    old, values, new, why = CHANGED[case]
    conn = connect(server, db)
    # A NO PAD collation: MariaDB's *_nopad_*, MySQL 8's *_0900_*.
    nopad = "utf8mb4_nopad_bin" if "MariaDB" in _version(conn) else "utf8mb4_0900_bin"
    old, new = old.format(nopad=nopad), new.format(nopad=nopad)
    make(conn, old, values)
    before = shape(conn, "t"), rows(conn, "t")
    with pytest.raises(InvalidAlter, match=why):
        migrate(MigrationConfig(dsn=server, database=db, table="t", alter=f"MODIFY k {new} "
                                "NOT NULL", repair=False, tuning=TUNING))
    assert (shape(conn, "t"), rows(conn, "t")) == before
    assert tables(conn) == {"t", "twin"}
    conn.close()


def _version(conn: Conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        return str(cur.fetchone()[0])


def test_another_shared_key_is_walked_when_the_primary_key_changes_values(
        server: Dsn, db: str) -> None:
    """PRIMARY KEY (k) loses its fractional seconds, UNIQUE KEY (id) is kept: the run
    walks id, and a row deleted after the checksum is gone from the new table as from
    the native ALTER's (before: exit 0 with it still there)."""
    conn = connect(server, db)
    make(conn, "DATETIME(6)", [f"2020-01-01 00:{i:02d}:00.5" for i in range(ROWS)],
         extra=", UNIQUE KEY uq_id (id)")
    delete_after_checksum(conn, victim=17)
    try:
        migrate(MigrationConfig(dsn=server, database=db, table="t",
                                alter="MODIFY k DATETIME NOT NULL", repair=False,
                                tuning=TUNING))
    finally:
        faults.clear()
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE twin MODIFY k DATETIME NOT NULL")
    assert rows(conn, "t") == rows(conn, "twin")
    assert len(rows(conn, "t")) == ROWS - 1
    conn.close()
