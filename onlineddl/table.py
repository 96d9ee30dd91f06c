"""Table metadata, the column mapping between old and new table, and artifact names."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
from dataclasses import dataclass

from onlineddl import conversion
from onlineddl.db import Session
from onlineddl.errors import InvalidAlter, PreflightFailed, TableNotFound, UnsupportedTable
from onlineddl.sql import ident
from onlineddl.statement import ParsedAlter

MAX_IDENT = 64


@dataclass(frozen=True)
class Artifacts:
    """The names of everything a run creates on the server, in one place.

    All are fixed by T's name except `old`, the name the swap gives the original table:
    each run picks its own (old_table_name) and records it in its checkpoint before the
    cutover, so old tables of several runs coexist; "" until a run has picked it."""

    table: str
    shadow: str      # _T_new: the table being built
    old: str         # _T_old_<stamp>: the original after this run's swap ("" unknown)
    checkpoint: str  # _T_chkpnt
    sentry: str      # cutover guard; its name sorts after T (see cutover.py)
    swap: str        # _T_swap: renamed onto the sentry's name by the swap itself

    @classmethod
    def for_table(cls, table: str, old: str = "") -> Artifacts:
        return cls(table, artifact_name(table, "new"), old,
                   artifact_name(table, "chkpnt"), sentry_name(table),
                   artifact_name(table, "swap"))

    def with_old(self, old: str) -> Artifacts:
        return dataclasses.replace(self, old=old)

    @property
    def legacy_old(self) -> str:
        """`_T_old`: where onlineddl before per-run old tables kept the original. Never
        created any more; cleanup --drop-old still removes it on request."""
        return artifact_name(self.table, "old")

    def all(self) -> tuple[str, ...]:
        return tuple(n for n in (self.shadow, self.old, self.checkpoint, self.sentry,
                                 self.swap) if n)


def artifact_name(table: str, suffix: str) -> str:
    """`_T_suffix`, shortened deterministically when it would pass 64 characters."""
    name = f"_{table}_{suffix}"
    if len(name) <= MAX_IDENT:
        return name
    digest = hashlib.sha1(table.encode("utf-8")).hexdigest()[:8]
    keep = MAX_IDENT - len(suffix) - len(digest) - 3
    return f"_{table[:keep]}_{digest}_{suffix}"


def old_table_name(table: str, when: datetime.datetime) -> str:
    """`_T_old_<YYYYMMDD>_<HHMMSS>` (UTC), shortened like artifact_name: the name a run's
    swap gives the original table. The stamp keeps names of successive runs apart."""
    return artifact_name(table, f"old_{when:%Y%m%d_%H%M%S}")


def sentry_name(table: str) -> str:
    """A name that sorts after `table` in the server's metadata-lock order (bytes of the
    UTF-8 name), within 64 characters: `T_cutover`, or for long names a prefix of T with
    its next character raised to `~`."""
    name = f"{table}_cutover"
    if len(name) <= MAX_IDENT:
        return name
    raw = table.encode("utf-8")
    for i in range(min(len(table), MAX_IDENT) - 1, -1, -1):
        candidate = table[:i] + "~"
        if candidate.encode("utf-8") > raw:
            return candidate
    raise ValueError(f"no cutover sentry name sorts after {table!r}")


@dataclass(frozen=True)
class Column:
    name: str
    ordinal: int          # 0-based position in the table
    data_type: str        # e.g. "int", "varchar"
    column_type: str      # e.g. "int(10) unsigned", "enum('a','B')": as the server wrote it
    charset: str | None
    collation: str | None
    nullable: bool
    generated: bool       # stored/virtual generated columns are never written directly
    auto_increment: bool = False
    # NOT NULL without a DEFAULT (nor AUTO_INCREMENT or generated): ALTER TABLE gives
    # existing rows the type's implicit value (conversion.implicit_default).
    no_default: bool = False

    @property
    def unsigned(self) -> bool:
        return "unsigned" in self.column_type


@dataclass(frozen=True)
class UniqueKey:
    """A UNIQUE key (or the PRIMARY KEY) over whole NOT NULL columns: one that can be
    "the key" of a run (keys.py)."""

    name: str                 # "PRIMARY" for the primary key
    columns: tuple[str, ...]  # in key order

    def describe(self) -> str:
        kind = "PRIMARY KEY" if self.name == "PRIMARY" else f"UNIQUE KEY {self.name}"
        return f"{kind} ({', '.join(self.columns)})"


@dataclass(frozen=True)
class TableInfo:
    database: str
    name: str
    columns: tuple[Column, ...]
    pk: tuple[str, ...]       # the table's PRIMARY KEY (() without one)
    engine: str
    rows_estimate: int
    create_sql: str
    # The run's key: the NOT NULL unique key the copy chunks by, the applier keys its
    # changes by and the checksum compares by. The primary key unless keys.choose()
    # picked another (the ALTER changes the primary key), or, for a table without one,
    # the first UNIQUE key over NOT NULL columns.
    key: tuple[str, ...] = ()
    key_name: str = ""
    # Every UNIQUE key over whole NOT NULL columns, the primary key first, then by name.
    unique_keys: tuple[UniqueKey, ...] = ()

    def __post_init__(self) -> None:
        if not self.key and self.pk:
            object.__setattr__(self, "key", self.pk)
            object.__setattr__(self, "key_name", "PRIMARY")

    def with_key(self, key: UniqueKey) -> TableInfo:
        """This table walked by `key` (one of its unique_keys)."""
        return dataclasses.replace(self, key=key.columns, key_name=key.name)

    @property
    def run_key(self) -> UniqueKey:
        return UniqueKey(self.key_name, self.key)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name.lower() == name.lower():
                return col
        raise KeyError(name)

    def has_column(self, name: str) -> bool:
        return any(c.name.lower() == name.lower() for c in self.columns)

    @property
    def pk_ordinals(self) -> tuple[int, ...]:
        return tuple(self.column(n).ordinal for n in self.pk)

    @property
    def pk_columns(self) -> tuple[Column, ...]:
        return tuple(self.column(n) for n in self.pk)

    @property
    def key_ordinals(self) -> tuple[int, ...]:
        return tuple(self.column(n).ordinal for n in self.key)

    @property
    def key_columns(self) -> tuple[Column, ...]:
        return tuple(self.column(n) for n in self.key)


def name_case(session: Session) -> int:
    """@@lower_case_table_names: 0 names are case-sensitive; 1 stored in lower case and
    compared so; 2 stored as given and compared in lower case."""
    return int(session.scalar("SELECT @@lower_case_table_names") or 0)


def same_name(a: str, b: str, case: int) -> bool:
    """Do two names denote the same database or table on a server with this `case`?"""
    return a == b if case == 0 else a.lower() == b.lower()


def resolve_names(session: Session, database: str, table: str, *, must_exist: bool = True
                  ) -> tuple[str, str]:
    """The database and table as the server stores them, for the operator's spelling.

    Everything a run builds from the names (artifacts, the runner lock, messages, the
    binlog reader's table) uses these, so `--table Orders` and `--table orders` are one
    table when @@lower_case_table_names is 1 or 2, and never T's own artifacts' clash.
    With `must_exist` False (cleanup, status), a missing table keeps the operator's
    spelling (lower-cased when the server stores names so)."""
    case = name_case(session)
    schemas = [str(r[0]) for r in session.query(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
        "WHERE LOWER(SCHEMA_NAME) = LOWER(%s)", (database,))]
    stored_db = next((s for s in schemas if same_name(s, database, case)), None)
    if stored_db is None:
        raise TableNotFound(f"database {database} does not exist",
                            hint=_spelling_hint(schemas, case, "--database"))
    tables = [str(r[0]) for r in session.query(
        "SELECT TABLE_NAME FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND LOWER(TABLE_NAME) = LOWER(%s)", (stored_db, table))]
    stored = next((t for t in tables if same_name(t, table, case)), None)
    if stored is not None:
        return stored_db, stored
    if must_exist:
        raise TableNotFound(f"table {database}.{table} does not exist",
                            hint=_spelling_hint(tables, case, "--table"))
    return stored_db, table.lower() if case == 1 else table


def _spelling_hint(near: list[str], case: int, flag: str) -> str:
    if case == 0 and near:
        return (f"names are case-sensitive on this server (lower_case_table_names=0): "
                f"did you mean {flag} {near[0]}?")
    return "check --database and --table"


def load_table(session: Session, database: str, table: str) -> TableInfo:
    row = session.query_one(
        "SELECT ENGINE, TABLE_ROWS, TABLE_TYPE FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (database, table))
    if row is None:
        raise TableNotFound(f"table {database}.{table} does not exist",
                            hint="check --database and --table")
    if row[2] == "SYSTEM VERSIONED":
        raise UnsupportedTable(
            f"{database}.{table} is a system-versioned table: onlineddl would copy only "
            "its current rows and lose their history",
            hint="run the ALTER with a plain ALTER TABLE (MariaDB needs "
                 "system_versioning_alter_history=KEEP for it)")
    if row[2] != "BASE TABLE":
        raise UnsupportedTable(f"{database}.{table} is a {row[2]}, not a base table")
    columns = _load_columns(session, database, table)
    pk = _load_primary_key(session, database, table)
    keys = _load_unique_keys(session, database, table, columns)
    create = session.query_one(f"SHOW CREATE TABLE {ident(database)}.{ident(table)}")
    first = keys[0] if keys else UniqueKey("", ())
    return TableInfo(database, table, columns, pk, str(row[0] or ""), int(row[1] or 0),
                     str(create[1]) if create else "", pk or first.columns,
                     "PRIMARY" if pk else first.name, keys)


def _load_columns(session: Session, database: str, table: str) -> tuple[Column, ...]:
    rows = session.query(
        "SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME, "
        "COLLATION_NAME, IS_NULLABLE, EXTRA, GENERATION_EXPRESSION, COLUMN_DEFAULT "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION", (database, table))
    out = []
    for i, r in enumerate(rows):
        extra = str(r[7] or "").upper()
        # Not "GENERATED" alone: MySQL marks DEFAULT CURRENT_TIMESTAMP as DEFAULT_GENERATED.
        generated = bool(r[8]) or any(w in extra for w in ("VIRTUAL", "STORED", "PERSISTENT"))
        auto = "AUTO_INCREMENT" in extra
        # MariaDB writes a DEFAULT NULL as 'NULL' and no default as NULL; MySQL writes
        # NULL for both, but a NOT NULL column cannot default to NULL.
        no_default = r[9] is None and r[6] != "YES" and not auto and not generated
        # COLUMN_TYPE keeps its case: ENUM/SET members are case-sensitive text.
        out.append(Column(str(r[0]), i, str(r[2]).lower(), str(r[3]),
                          r[4], r[5], r[6] == "YES", generated, auto, no_default))
    return tuple(out)


def _load_primary_key(session: Session, database: str, table: str) -> tuple[str, ...]:
    rows = session.query(
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' "
        "ORDER BY SEQ_IN_INDEX", (database, table))
    return tuple(str(r[0]) for r in rows)


def _load_unique_keys(session: Session, database: str, table: str,
                      columns: tuple[Column, ...]) -> tuple[UniqueKey, ...]:
    """The UNIQUE keys (the primary key included) whose every part is a whole column
    that is NOT NULL: the primary key first, then by name. Left out: a key with a
    functional part (MySQL 8), and a UNIQUE key with a prefix part (`email(10)`), whose
    index cannot give the rows in the order of the whole values (every chunk would sort
    the table). A primary key with a prefix part stays walkable, as before."""
    rows = session.query(
        "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0 "
        "ORDER BY INDEX_NAME, SEQ_IN_INDEX", (database, table))
    nullable = {c.name.lower(): c.nullable for c in columns}
    parts: dict[str, list[str | None]] = {}
    for index, column, sub_part in rows:
        whole = sub_part is None or str(index) == "PRIMARY"
        parts.setdefault(str(index), []).append(
            str(column) if column is not None and whole else None)
    keys = [UniqueKey(name, tuple(str(c) for c in cols)) for name, cols in parts.items()
            if all(c is not None and nullable.get(c.lower()) is False for c in cols)]
    return tuple(sorted(keys, key=lambda k: (k.name != "PRIMARY", k.name)))


# PK column types whose order the engine can reason about; see chunker.KeyOrder.
SUPPORTED_PK_TYPES = {
    "tinyint", "smallint", "mediumint", "int", "bigint", "decimal",
    "char", "varchar", "binary", "varbinary", "date", "datetime", "timestamp", "time",
    "year",
}


# Character sets of text key columns whose binlog bytes onlineddl decodes itself, with
# the Python codec for each (MySQL's latin1 is cp1252).
KEY_CODECS = {"utf8mb4": "utf-8", "utf8mb3": "utf-8", "utf8": "utf-8", "latin1": "cp1252",
              "ascii": "ascii", "ucs2": "utf-16-be", "utf16": "utf-16-be",
              "utf32": "utf-32-be"}


# Column types whose binlog values the wire reader (binlog/wire.py) can step over.
# Tables with others (MariaDB's INET6/UUID, compressed columns, types newer than this
# list) are read by the library's general decoder, which gets latin1 text and binary
# keys wrong.
WIRE_TYPES = {
    "tinyint", "smallint", "mediumint", "int", "bigint", "float", "double", "decimal",
    "date", "time", "datetime", "timestamp", "year", "char", "varchar", "binary",
    "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "tinytext", "text",
    "mediumtext", "longtext", "enum", "set", "bit", "json", "geometry", "point",
    "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
    "geometrycollection"}
UTF8 = ("utf8mb4", "utf8mb3", "utf8")


def wire_sized(col: Column) -> bool:
    return col.data_type in WIRE_TYPES and "compressed" not in col.column_type.lower()


INTEGER_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64}


@dataclass(frozen=True)
class ColumnMapping:
    """Which old column feeds which new column. Added columns take their defaults, or,
    NOT NULL without one, the implicit value ALTER TABLE writes (`fills`)."""

    source: tuple[str, ...]   # old column names
    target: tuple[str, ...]   # new column names, same order
    dropped: tuple[str, ...]
    added: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...]
    # Per source column, the copy expression with `{}` where the old column's reference
    # goes (conversion.copy_expr); empty: the bare column for every one.
    converts: tuple[str, ...] = ()
    fills: tuple[tuple[str, str], ...] = ()  # (added column, implicit value as SQL)

    def source_exprs(self, table: str | None = None) -> list[str]:
        """What the copy and the flushes SELECT, in target_cols() order; `table` (a
        quoted, qualified name) qualifies the old columns, for statements that join."""
        refs = [f"{table}.{ident(c)}" if table else ident(c) for c in self.source]
        # replace, not format: an expression may name the old column more than once.
        exprs = [c.replace("{}", r) for c, r in zip(self.converts, refs, strict=True)] \
            if self.converts else refs
        return exprs + [value for _, value in self.fills]

    def target_cols(self) -> tuple[str, ...]:
        return self.target + tuple(name for name, _ in self.fills)


def unfed_columns(new: TableInfo, mapping: ColumnMapping) -> tuple[str, ...]:
    """The new table's columns no old column feeds and the server does not compute:
    added ones, which every write leaves to their defaults (applier.FlushTarget.unfed)."""
    fed = {c.lower() for c in mapping.target_cols()}
    return tuple(c.name for c in new.columns
                 if not c.generated and c.name.lower() not in fed)


def build_mapping(old: TableInfo, new: TableInfo, alter: ParsedAlter) -> ColumnMapping:
    """Derive the mapping from both schemas and the parsed ALTER.

    The server applied the ALTER, so the new schema is the truth; the parsed ALTER only
    tells renames apart from a drop plus an add (which the schemas alone cannot).
    A generated old column that becomes a regular column is copied (ALTER keeps its
    values); one that stays generated, or a column that becomes one, the server computes.
    """
    renames = {k.lower(): v for k, v in alter.renames.items()}
    dropped_lc = {d.lower() for d in alter.dropped}
    source, target, renamed, dropped, converts = [], [], [], [], []
    for col in old.columns:
        new_name = renames.get(col.name.lower(), col.name)
        if col.name.lower() in dropped_lc and col.name.lower() not in renames:
            dropped.append(col.name)
            continue
        if not new.has_column(new_name):
            raise PreflightFailed(
                f"column {col.name} is missing from the new table but the ALTER neither "
                "drops nor renames it", hint="write the ALTER with explicit DROP/CHANGE")
        if new.column(new_name).generated:
            if not col.generated:
                dropped.append(col.name)  # became generated: the server computes it
            continue
        source.append(col.name)
        target.append(new.column(new_name).name)
        converts.append(conversion.copy_expr(col, new.column(new_name), "{}"))
        if new_name.lower() != col.name.lower():
            renamed.append((col.name, new.column(new_name).name))
    _refuse_new_numbering(old, new, dict(zip(target, source, strict=True)))
    mapped = {t.lower() for t in target}
    added = [c.name for c in new.columns if c.name.lower() not in mapped and not c.generated]
    fills = tuple((c.name, conversion.implicit_default(c, _json_checked(new, c.name)))
                  for c in new.columns if c.name in added and c.no_default)
    plain = all(c == "{}" for c in converts)
    return ColumnMapping(tuple(source), tuple(target), tuple(dropped), tuple(added),
                         tuple(renamed), () if plain else tuple(converts), fills)


def _refuse_new_numbering(old: TableInfo, new: TableInfo, sources: dict[str, str]) -> None:
    """A column the ALTER makes AUTO_INCREMENT (added, or an existing column gaining it)
    is numbered by the plain ALTER in one pass over the table, and its zeros renumbered;
    a chunked copy and flushes that re-insert changed rows number them otherwise. Only an
    AUTO_INCREMENT column fed by an AUTO_INCREMENT column keeps its values exactly."""
    for col in new.columns:
        origin = sources.get(col.name)
        if col.auto_increment and (origin is None or not old.column(origin).auto_increment):
            raise InvalidAlter(
                f"the ALTER makes {col.name} a new AUTO_INCREMENT column; the server would "
                "number the existing rows in one pass, which an online copy cannot "
                "reproduce exactly",
                hint="add or convert the AUTO_INCREMENT column with a plain ALTER TABLE; "
                     "the table is unchanged")


def _json_checked(info: TableInfo, column: str) -> bool:
    """MariaDB's JSON: a LONGTEXT with a json_valid() CHECK on the column."""
    return f"json_valid({ident(column)})".lower() in info.create_sql.lower()


def present_artifacts(session: Session, database: str, artifacts: Artifacts
                      ) -> dict[str, str]:
    """Which of T's artifacts exist (and T itself), with their table comments, keyed by
    the names in `artifacts` (built from T's stored name, see resolve_names). Matched
    as the server matches names: exactly when lower_case_table_names is 0 (where
    information_schema's own comparison may ignore case), in lower case otherwise."""
    names = (artifacts.table, *artifacts.all(), artifacts.legacy_old)
    marks = ", ".join(["%s"] * len(names))
    rows = session.query(
        "SELECT TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES "
        f"WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN ({marks})", (database, *names))
    case = name_case(session)
    found: dict[str, str] = {}
    for stored, comment in rows:
        for name in names:
            if same_name(str(stored), name, case):
                found[name] = str(comment or "")
    return found


def integer_key(*tables: TableInfo) -> bool:
    """Is every column of these tables' run keys an integer?"""
    return all(t.column(c).data_type in INTEGER_BITS for t in tables for c in t.key)


_COUNTER = re.compile(r"\bAUTO_INCREMENT=(\d+)")


def auto_increment_counter(session: Session, database: str, table: str) -> int | None:
    """The table's next AUTO_INCREMENT value, or None without such a column. Read from
    SHOW CREATE TABLE, which shows the live counter on both flavors (MySQL 8's
    information_schema.TABLES caches it for information_schema_stats_expiry)."""
    row = session.query_one(f"SHOW CREATE TABLE {ident(database)}.{ident(table)}")
    text = str(row[1]) if row else ""
    # Table options follow the column list's closing parenthesis; the counter comes
    # before COMMENT=, so a comment cannot be mistaken for it.
    options = text[text.rfind("\n)") + 2:]
    match = _COUNTER.search(options)
    return int(match.group(1)) if match else None
