"""All SQL text the engine runs. `ident()` is the only way a name reaches SQL.

Values always travel as driver parameters (`%s`); the operator's ALTER clauses are the
only raw text spliced in, and only in `alter_table()`.

Key predicates are written out as OR-expanded comparisons rather than row constructors
(`(a, b) > (x, y)`), because MariaDB's range optimizer does not use an index for row
constructor comparisons and would scan the whole table for every chunk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

Key = tuple[Any, ...]
Params = list[Any]

# Strict, so a value that does not fit the new column is an error (never silently
# truncated); NO_AUTO_VALUE_ON_ZERO, so a copied 0 in an AUTO_INCREMENT column stays 0.
SESSION_SQL_MODE = "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION"

# Global sql_mode flags the tool's sessions leave out: they change how the tool's own
# SQL reads (ANSI_QUOTES and the compound modes: the quoting and the parser), pad CHAR
# values on read (a CHAR -> VARCHAR copy would keep the padding ALTER drops), or only
# change SHOW CREATE output. NO_BACKSLASH_ESCAPES stays: the operator's ALTER text is
# read as the server reads it ('C:\temp' keeps its backslash), and the driver escapes
# values for it (text by doubling quotes, bytes as hex literals).
FOREIGN_SQL_MODES = frozenset({
    "ANSI_QUOTES", "ANSI", "ORACLE", "MSSQL", "DB2", "POSTGRESQL", "MAXDB", "MYSQL323",
    "MYSQL40", "TRADITIONAL", "PAD_CHAR_TO_FULL_LENGTH", "NO_FIELD_OPTIONS",
    "NO_KEY_OPTIONS", "NO_TABLE_OPTIONS", "EMPTY_STRING_IS_NULL"})


def session_sql_mode(global_mode: str) -> str:
    """The server's global sql_mode (the rules a plain ALTER follows: NO_ZERO_DATE,
    TIME_ROUND_FRACTIONAL, ...) without FOREIGN_SQL_MODES, plus SESSION_SQL_MODE."""
    kept = [m for m in global_mode.upper().split(",")
            if m and m not in FOREIGN_SQL_MODES and m != "STRICT_TRANS_TABLES"]
    wanted = SESSION_SQL_MODE.split(",")
    return ",".join(wanted + [m for m in kept if m not in wanted])


NEXT_TRANSACTION_READ_COMMITTED = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"


def ident(name: str) -> str:
    """Quote one identifier for MySQL/MariaDB: backticks, with inner backticks doubled."""
    if "\x00" in name:
        raise ValueError("identifier contains a NUL byte")
    return "`" + name.replace("`", "``") + "`"


def qualified(database: str, table: str) -> str:
    return f"{ident(database)}.{ident(table)}"


def column_list(names: Sequence[str]) -> str:
    return ", ".join(ident(n) for n in names)


def _greater(cols: Sequence[str], key: Key, strict: bool) -> tuple[str, Params]:
    """`cols > key` (`>=` when not strict) as an OR of prefix-equal terms."""
    terms: list[str] = []
    params: Params = []
    for i, col in enumerate(cols):
        eqs = [f"{ident(c)} = %s" for c in cols[:i]]
        last = i == len(cols) - 1
        op = ">" if strict or not last else ">="
        terms.append("(" + " AND ".join([*eqs, f"{ident(col)} {op} %s"]) + ")")
        params.extend([*key[:i], key[i]])
    return "(" + " OR ".join(terms) + ")", params


def _less_equal(cols: Sequence[str], key: Key) -> tuple[str, Params]:
    """`cols <= key` as an OR of prefix-equal terms."""
    terms: list[str] = []
    params: Params = []
    for i, col in enumerate(cols):
        eqs = [f"{ident(c)} = %s" for c in cols[:i]]
        op = "<=" if i == len(cols) - 1 else "<"
        terms.append("(" + " AND ".join([*eqs, f"{ident(col)} {op} %s"]) + ")")
        params.extend([*key[:i], key[i]])
    return "(" + " OR ".join(terms) + ")", params


def key_range(cols: Sequence[str], lower: Key | None, upper: Key | None) -> tuple[str, Params]:
    """Predicate for lower < key <= upper; None means unbounded on that side."""
    parts: list[str] = []
    params: Params = []
    if lower is not None:
        text, p = _greater(cols, lower, strict=True)
        parts.append(text)
        params.extend(p)
    if upper is not None:
        text, p = _less_equal(cols, upper)
        parts.append(text)
        params.extend(p)
    return (" AND ".join(parts) or "TRUE"), params


def key_in(cols: Sequence[str], keys: Sequence[Key], quoted: bool = False
           ) -> tuple[str, Params]:
    """`pk IN (...)` for one column, `(a, b) IN ((..), ..)` for composite keys.
    `quoted`: the column expressions are already quoted (e.g. `n.`id``)."""
    names = list(cols) if quoted else [ident(c) for c in cols]
    if len(cols) == 1:
        values = [k[0] for k in keys]
        if all(type(v) is int for v in values):
            return _int_key_set(names[0], values)
        marks = ", ".join(["%s"] * len(keys))
        return f"{names[0]} IN ({marks})", values
    one = "(" + ", ".join(["%s"] * len(cols)) + ")"
    marks = ", ".join([one] * len(keys))
    params: Params = [v for k in keys for v in k]
    return f"({', '.join(names)}) IN ({marks})", params


RUN = 16  # consecutive integer keys from which a BETWEEN beats listing them


def _int_key_set(name: str, values: list[int]) -> tuple[str, Params]:
    """Integer keys as `name IN (...)`, with runs of consecutive keys as BETWEEN: a bulk
    change (UPDATE ... WHERE id BETWEEN ...) then costs the server one range instead of
    thousands of list entries to parse and look up. Exactly the given keys, no others."""
    ordered = sorted(set(values))
    if not ordered:
        return "FALSE", []
    singles: list[int] = []
    ranges: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(ordered) + 1):
        if i < len(ordered) and ordered[i] == ordered[i - 1] + 1:
            continue
        if i - start >= RUN:
            ranges.append((ordered[start], ordered[i - 1]))
        else:
            singles.extend(ordered[start:i])
        start = i
    parts: list[str] = []
    params: Params = []
    if singles:
        parts.append(f"{name} IN ({', '.join(['%s'] * len(singles))})")
        params.extend(singles)
    for low, high in ranges:
        parts.append(f"{name} BETWEEN %s AND %s")
        params += [low, high]
    if len(parts) == 1:
        return parts[0], params
    return "(" + " OR ".join(parts) + ")", params


def order_by(cols: Sequence[str], descending: bool = False) -> str:
    suffix = " DESC" if descending else ""
    return ", ".join(ident(c) + suffix for c in cols)


def use(database: str) -> str:
    """The session's default database: the operator's clauses are read in it, as a
    plain client's ALTER is (an unqualified `NEXT VALUE FOR seq` names a sequence there)."""
    return f"USE {ident(database)}"


def alter_table(database: str, table: str, clauses: str, instant: bool = False) -> str:
    """The one place the operator's ALTER clauses are spliced into SQL. `instant` asks
    for ALGORITHM=INSTANT, which the server refuses (rather than copies) when it cannot;
    statement/alter.py refuses an ALGORITHM= of the operator's own, so there is only one."""
    suffix = ", ALGORITHM=INSTANT" if instant else ""
    return f"ALTER TABLE {qualified(database, table)} {clauses}{suffix}"


def drop_table(database: str, table: str, *, if_exists: bool = True) -> str:
    """The one DROP TABLE text (ledger.py decides what may be dropped)."""
    return f"DROP TABLE {'IF EXISTS ' if if_exists else ''}{qualified(database, table)}"


def set_auto_increment(database: str, table: str, counter: int) -> str:
    """Raise a table's AUTO_INCREMENT counter (InnoDB changes only metadata for this)."""
    return f"ALTER TABLE {qualified(database, table)} AUTO_INCREMENT = {int(counter)}"


def next_chunk_bound(
    database: str, table: str, cols: Sequence[str], lower: Key | None, rows: int
) -> tuple[str, Params]:
    """The key `rows` rows above `lower`: the inclusive upper bound of the next chunk."""
    where, params = key_range(cols, lower, None)
    sql = (
        f"SELECT {column_list(cols)} FROM {qualified(database, table)} "
        f"WHERE {where} ORDER BY {order_by(cols)} LIMIT 1 OFFSET %s"
    )
    return sql, [*params, rows - 1]


def copy_range(
    database: str,
    source: str,
    target: str,
    source_exprs: Sequence[str],
    target_cols: Sequence[str],
    pk: Sequence[str],
    lower: Key | None,
    upper: Key | None,
    target_pk: Sequence[str] | None = None,
) -> tuple[str, Params]:
    """Copy one chunk. A duplicate on a UNIQUE key is not inserted (and is counted in the
    server's "Duplicates:" info, which the copier inspects); any other data error fails.
    `pk` is the source's key; `target_pk` the target's, when the ALTER renames it."""
    where, params = key_range(pk, lower, upper)
    # Qualified: an unqualified name is ambiguous between the two tables.
    first = f"{qualified(database, target)}.{ident((target_pk or pk)[0])}"
    sql = (
        f"INSERT INTO {qualified(database, target)} ({column_list(target_cols)}) "
        f"SELECT {', '.join(source_exprs)} FROM {qualified(database, source)} "
        f"WHERE {where} ON DUPLICATE KEY UPDATE {first} = {first}"
    )
    return sql, params


def delete_keys(database: str, table: str, pk: Sequence[str], keys: Sequence[Key]
                ) -> tuple[str, Params]:
    where, params = key_in(pk, keys)
    return f"DELETE FROM {qualified(database, table)} WHERE {where}", params


def delete_missing(database: str, source: str, target: str, source_pk: Sequence[str],
                   target_pk: Sequence[str], keys: Sequence[Key]) -> tuple[str, Params]:
    """Delete the target's rows for `keys` that no longer exist in the source.
    (No aliases: MariaDB resolves a multi-table DELETE's alias in the default database.)"""
    tq, sq = qualified(database, target), qualified(database, source)
    where, params = key_in([f"{tq}.{ident(c)}" for c in target_pk], keys, quoted=True)
    sql = (f"DELETE {tq} FROM {tq} LEFT JOIN {sq} ON {_same_key(tq, sq, source_pk, target_pk)} "
           f"WHERE {where} AND {sq}.{ident(source_pk[0])} IS NULL")
    return sql, params


def _same_key(target: str, source: str, source_pk: Sequence[str],
              target_pk: Sequence[str]) -> str:
    """Join condition: the target's row (`target`: a qualified name or alias) has the
    source's row's key."""
    return " AND ".join(f"{target}.{ident(t)} = {source}.{ident(c)}"
                        for c, t in zip(source_pk, target_pk, strict=True))


def delete_above(database: str, table: str, pk: Sequence[str], key: Key | None
                 ) -> tuple[str, Params]:
    """Delete every row whose key is above `key` (None: every row)."""
    if key is None:
        return f"DELETE FROM {qualified(database, table)}", []
    where, params = _greater(pk, key, strict=True)
    return f"DELETE FROM {qualified(database, table)} WHERE {where}", params


def replace_keys(
    database: str,
    source: str,
    target: str,
    source_exprs: Sequence[str],
    target_cols: Sequence[str],
    pk: Sequence[str],
    keys: Sequence[Key],
) -> tuple[str, Params]:
    """Re-read the current source rows and write them to the target."""
    where, params = key_in(pk, keys)
    return _replace_select(database, source, target, source_exprs, target_cols, where), params


def _replace_select(database: str, source: str, target: str, source_exprs: Sequence[str],
                    target_cols: Sequence[str], where: str, verb: str = "REPLACE") -> str:
    """LOCK IN SHARE MODE makes this a locking read: a transaction whose binlog event we
    already received may not be visible yet to a plain read (the binlog is sent before
    the InnoDB commit completes); a locking read waits for it and sees its result."""
    return (f"{verb} INTO {qualified(database, target)} ({column_list(target_cols)}) "
            f"SELECT {', '.join(source_exprs)} FROM {qualified(database, source)} "
            f"WHERE {where} LOCK IN SHARE MODE")


def insert_keys(database: str, source: str, target: str, source_exprs: Sequence[str],
                target_cols: Sequence[str], pk: Sequence[str], keys: Sequence[Key]
                ) -> tuple[str, Params]:
    """replace_keys without REPLACE: a row whose unique value another row of the target
    holds fails the statement (duplicate-key error) instead of deleting that row. The
    target must not have the rows for `keys` (delete_keys them first)."""
    where, params = key_in(pk, keys)
    return _replace_select(database, source, target, source_exprs, target_cols, where,
                           verb="INSERT"), params


def upsert_keys(database: str, source: str, target: str, source_exprs: Sequence[str],
                target_cols: Sequence[str], pk: Sequence[str], keys: Sequence[Key]
                ) -> tuple[str, Params]:
    """replace_keys for a target with columns the source does not feed (a revert's old
    table: a column the migration dropped): REPLACE would reset them to their defaults,
    so an existing row has only the fed columns updated (INSERT ... ON DUPLICATE KEY
    UPDATE) and a new row takes the defaults. Only for a target whose one UNIQUE key is
    the primary key: a duplicate under another one would update that other row."""
    where, params = key_in(pk, keys)
    text = _replace_select(database, source, target, source_exprs, target_cols, where,
                           verb="INSERT")
    tq = qualified(database, target)
    sets = ", ".join(f"{tq}.{ident(c)} = VALUES({ident(c)})" for c in target_cols)
    return f"{text} ON DUPLICATE KEY UPDATE {sets}", params


def key_values(database: str, table: str, exprs: Sequence[str], pk: Sequence[str],
               keys: Sequence[Key]) -> tuple[str, Params]:
    """The distinct values of a unique key's parts (`exprs`) among the rows for `keys`,
    each with how many of those rows hold it, as the expressions compare them; rows with
    a NULL part never collide and are left out. A locking read."""
    where, params = key_in(pk, keys)
    listed = ", ".join(exprs)
    not_null = " AND ".join(f"{e} IS NOT NULL" for e in exprs)
    return (f"SELECT {listed}, COUNT(*) FROM {qualified(database, table)} "
            f"WHERE {where} AND {not_null} GROUP BY {listed} LOCK IN SHARE MODE"), params


def rows_holding(database: str, table: str, exprs: Sequence[str], pk: Sequence[str],
                 values: Sequence[Key], among: Sequence[Key] | None = None
                 ) -> tuple[str, Params]:
    """The keys and key-part values of the rows whose unique key parts (`exprs`) equal one
    of `values` (compared as the expressions compare), among the rows for `among` when
    given. A locking read: the rows found keep their values until the transaction ends."""
    where, params = key_in(exprs, values, quoted=True)
    if among is not None:
        more, extra = key_in(pk, among)
        where, params = f"{where} AND {more}", [*params, *extra]
    return (f"SELECT {column_list(pk)}, {', '.join(exprs)} FROM {qualified(database, table)} "
            f"WHERE {where} LOCK IN SHARE MODE"), params


_BARE = re.compile(r"`(?:[^`]|``)*`")


def update_keys(database: str, source: str, target: str, source_exprs: Sequence[str],
                target_cols: Sequence[str], source_pk: Sequence[str],
                target_pk: Sequence[str], keys: Sequence[Key]) -> tuple[str, Params]:
    """Update the target's existing rows for `keys` from the source's current rows, in
    place. The source's rows are read with shared locks (the server takes them for the
    read side of any multi-table UPDATE): like replace_keys, it waits for a transaction
    whose binlog event arrived before its commit became visible.

    Cheaper for the server than REPLACE (about 8 against 12-15 us of CPU a row here:
    no failed insert first, no row written when nothing differs). It only updates, and
    not the key columns (setting them makes the server buffer the whole update in a
    temporary table): for integer keys only, where a matching key is the same key.
    Rows missing from the target are left to replace_missing. Both tables are in scope:
    a bare quoted column in `source_exprs` is qualified with the source here (unqualified,
    the server would read the target's own column and change nothing); a converted
    column must come qualified (ColumnMapping.source_exprs(table))."""
    tq, sq = qualified(database, target), qualified(database, source)
    keyset = {c.lower() for c in target_pk}
    sets = ", ".join(f"{tq}.{ident(t)} = {sq}.{e}" if _BARE.fullmatch(e) else
                     f"{tq}.{ident(t)} = {e}"
                     for e, t in zip(source_exprs, target_cols, strict=True)
                     if t.lower() not in keyset)
    where, params = key_in([f"{sq}.{ident(c)}" for c in source_pk], keys, quoted=True)
    join = _same_key(tq, sq, source_pk, target_pk)
    return f"UPDATE {tq} JOIN {sq} ON {join} SET {sets} WHERE {where}", params


def replace_missing(database: str, source: str, target: str, source_exprs: Sequence[str],
                    target_cols: Sequence[str], source_pk: Sequence[str],
                    target_pk: Sequence[str], keys: Sequence[Key]) -> tuple[str, Params]:
    """replace_keys for those of `keys` whose row the target does not have (the server
    reads the target into a temporary table first: it is also the statement's target).
    Not under LOCK TABLES, which would want the alias locked on its own."""
    tq, sq = qualified(database, target), qualified(database, source)
    where, params = key_in([f"{sq}.{ident(c)}" for c in source_pk], keys, quoted=True)
    probe = _same_key("x", sq, source_pk, target_pk)
    absent = f"NOT EXISTS (SELECT 1 FROM {tq} AS x WHERE {probe})"
    return _replace_select(database, source, target, source_exprs, target_cols,
                           f"{where} AND {absent}"), params


def checksum_chunk(
    database: str, table: str, exprs: Sequence[str], pk: Sequence[str],
    lower: Key | None, upper: Key | None,
) -> tuple[str, Params]:
    """Row count and the SUM of per-row CRC32s. Not BIT_XOR: CRC32 is linear over XOR,
    so the same change to every row of a chunk (a time zone shift of one column) XORs
    each row's hash with one constant, which an even number of rows cancels out."""
    where, params = key_range(pk, lower, upper)
    row = row_hash(exprs)
    sql = (
        f"SELECT COUNT(*), COALESCE(SUM({row}), 0) "
        f"FROM {qualified(database, table)} WHERE {where}"
    )
    return sql, params


def checksum_rows(
    database: str, table: str, exprs: Sequence[str], pk: Sequence[str],
    lower: Key | None, upper: Key | None,
) -> tuple[str, Params]:
    """Per-row hashes of a chunk, to name the keys that differ."""
    where, params = key_range(pk, lower, upper)
    sql = (
        f"SELECT {column_list(pk)}, {row_hash(exprs)} FROM {qualified(database, table)} "
        f"WHERE {where} ORDER BY {order_by(pk)}"
    )
    return sql, params


def row_hash(exprs: Sequence[str]) -> str:
    # ISNULL() flags keep NULL apart from '' (CONCAT_WS skips NULLs).
    nulls = [f"ISNULL({e})" for e in exprs]
    return f"CRC32(CONCAT_WS('#', {', '.join([*exprs, *nulls])}))"
