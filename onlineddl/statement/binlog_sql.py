"""Statements read from the binlog: does a Query event change the table?"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlglot.errors import SqlglotError

from onlineddl.statement.tokens import Tok, Tokenizer, to_toks

# --- statements read from the binlog ------------------------------------------------------
#
# The binlog applier sees row changes as row events; anything else that changes the table
# arrives as a Query event: DDL, or DML a session logged as a statement. Such a statement
# stops the run. The binlog holds every statement on the server, so the table is found
# the way the server resolves names (the event's default database, `db`.`t`, quotes,
# executable comments), and only the table a statement writes counts: a read source, a
# view, a user, a column or another database's table of the same name does not.


class _Doubt(Exception):
    """A changing statement whose shape the reader does not follow."""


@dataclass(frozen=True)
class _Target:
    database: str | None  # None: a table of this name in any database (tests, messages)
    table: str
    default_db: str       # the database the statement ran in (the Query event's)
    fold_case: bool       # lower_case_table_names != 0: the server folds names

    def same(self, a: str, b: str) -> bool:
        return a.lower() == b.lower() if self.fold_case else a == b

    def is_database(self, name: str) -> bool:
        return self.database is None or self.same(name, self.database)

    def is_table(self, database: str | None, name: str) -> bool:
        return self.same(name, self.table) and self.is_database(
            self.default_db if database is None else database)


# A statement whose first word is not one of these never changes a table's rows or
# definition; the common ones (SAVEPOINT, XA ..., SET) are answered without tokenizing.
_CHANGING = {"ALTER", "RENAME", "DROP", "TRUNCATE", "CREATE", "INSERT", "REPLACE", "UPDATE",
             "DELETE", "LOAD", "WITH"}


def statement_changes_table(text: str, *, database: str | None, table: str,
                            default_db: str = "", fold_case: bool = False) -> bool:
    """Does this binlog statement change `database`.`table` (DDL on it, or a statement-
    logged write into it)? `default_db` is the database the statement ran in. In doubt
    (a statement not understood that names the table), yes: a false yes stops the run
    safely, a false no loses writes."""
    target = _Target(database, table, default_db, fold_case)
    # The first word ends at anything not a letter: `DELETE/* x */FROM t` starts with
    # DELETE. A statement starting otherwise (a comment) is tokenized.
    first = re.match(r"\s*([A-Za-z]+)", text)
    if first is not None and text.lstrip()[:1].isalpha() and \
            first.group(1).upper() not in _CHANGING:
        return False
    try:
        toks = _binlog_tokens(text)
    except SqlglotError:
        return table.lower() in text.lower()   # not even tokens: any mention is a doubt
    for statement in _split_statements(toks):
        try:
            if _writes(statement, target):
                return True
        except _Doubt:
            if any(t.kind != "punct" and target.same(t.text, table) for t in statement):
                return True
    return False


def creates_temporary_table(text: str, *, database: str | None, table: str,
                            default_db: str = "", fold_case: bool = False) -> bool:
    """Does this binlog statement create a TEMPORARY table named `database`.`table`? A
    session's temporary table hides the real table of that name from that session: its
    statements naming the table (logged as statements under binlog_format MIXED or
    STATEMENT) write the temporary table only. In doubt, no."""
    if not re.match(r"\s*CREATE\b", text, re.IGNORECASE):
        return False
    try:
        c = _Cursor(_binlog_tokens(text))
        temporary = False
        while c.at_word("OR", "REPLACE", "TEMPORARY"):
            temporary = temporary or c.at_word("TEMPORARY")
            c.i += 1
        if not temporary or not c.at_word("TABLE"):
            return False
        c.i += 1
        c.skip_if_exists()
        return _Target(database, table, default_db, fold_case).is_table(*c.table())
    except (SqlglotError, _Doubt):
        return False


def _binlog_tokens(text: str) -> list[Tok]:
    """Tokens, with the content of executable comments (/*! ... */, MariaDB's /*M! ... */)
    in place: the server runs it. Other comments are dropped."""
    out: list[Tok] = []
    after = 0
    for t in Tokenizer(dialect="mysql").tokenize(text):
        out += _executable(text[after:t.start])
        out += to_toks(t)
        after = t.end + 1
    return out + _executable(text[after:])


def _executable(gap: str) -> list[Tok]:
    """Tokens of the executable comments in the text between two tokens, which holds only
    blanks and comments."""
    out: list[Tok] = []
    i = 0
    while i < len(gap):
        if gap.startswith("/*", i):
            end = gap.find("*/", i + 2)
            end = len(gap) if end < 0 else end
            body = gap[i + 2:end]
            for mark in ("!", "M!"):
                if body.startswith(mark):
                    # A version number (5 or 6 digits) before the text to run.
                    rest = body[len(mark):]
                    digits = len(rest) - len(rest.lstrip("0123456789"))
                    out += _binlog_tokens(rest[min(digits, 6):])
                    break
            i = end + 2
        elif gap[i] == "#" or gap.startswith("--", i):
            end = gap.find("\n", i)
            i = len(gap) if end < 0 else end + 1
        else:
            i += 1
    return out


def _split_statements(toks: list[Tok]) -> list[list[Tok]]:
    """Statements separated by ';'. A stored program's body is part of its definition."""
    if toks and toks[0].is_word("CREATE") and any(
            t.is_word("PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE")
            for t in toks[1:8]):
        return [toks]
    parts: list[list[Tok]] = [[]]
    for tok in toks:
        if tok.is_punct(";"):
            parts.append([])
        else:
            parts[-1].append(tok)
    return [p for p in parts if p]


def _writes(toks: list[Tok], target: _Target) -> bool:
    verb = toks[0].text.upper() if toks[0].kind == "word" else ""
    if verb == "WITH":
        return _writes_after_with(toks, target)
    handler = _STATEMENT_HANDLERS.get(verb)
    return handler(_Cursor(toks), target) if handler else False


class _Cursor:
    """Reads a statement's tokens left to right; a surprise is a doubt."""

    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.i = 1                                  # after the verb

    def peek(self, ahead: int = 0) -> Tok | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def at_word(self, *words: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok is not None and tok.is_word(*words)

    def at_punct(self, punct: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok is not None and tok.is_punct(punct)

    def at_name(self) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind != "punct"

    def skip_words(self, *words: str) -> list[str]:
        seen = []
        while self.at_word(*words):
            seen.append(self.toks[self.i].text.upper())
            self.i += 1
        return seen

    def skip_if_exists(self) -> bool:
        """IF EXISTS or IF NOT EXISTS."""
        if not self.at_word("IF"):
            return False
        self.i += 3 if self.at_word("NOT", ahead=1) else 2
        return True

    def name(self) -> str:
        tok = self.peek()
        # A double-quoted name is a string token: a name only under ANSI_QUOTES, the only
        # sql_mode in which the server would have run the statement.
        if tok is None or tok.kind == "punct":
            raise _Doubt
        self.i += 1
        return tok.text

    def table(self) -> tuple[str | None, str]:
        """[db.]name"""
        first = self.name()
        if self.at_punct(".") and not self.at_punct("*", ahead=1):
            self.i += 1
            return first, self.name()
        return None, first

    def skip_parens(self) -> None:
        depth = 0
        while self.i < len(self.toks):
            tok = self.toks[self.i]
            depth += tok.is_punct("(") - tok.is_punct(")")
            self.i += 1
            if depth <= 0:
                return
        raise _Doubt

    def find_word(self, *words: str) -> bool:
        """Move to the next of `words` outside parentheses; False at the end."""
        depth = 0
        while self.i < len(self.toks):
            tok = self.toks[self.i]
            depth += tok.is_punct("(") - tok.is_punct(")")
            if depth == 0 and tok.is_word(*words):
                return True
            self.i += 1
        return False


def _query_alter(c: _Cursor, t: _Target) -> bool:
    c.skip_words("ONLINE", "OFFLINE", "IGNORE")
    if not c.at_word("TABLE"):
        return False                                # ALTER VIEW, USER, DATABASE, ...
    c.i += 1
    c.skip_if_exists()
    if t.is_table(*c.table()):
        return True
    # Another table's ALTER swaps data into ours: EXCHANGE PARTITION p WITH TABLE ours.
    while c.find_word("WITH"):
        c.i += 1
        if c.at_word("TABLE"):
            c.i += 1
            if t.is_table(*c.table()):
                return True
    return False


def _query_rename(c: _Cursor, t: _Target) -> bool:
    if not c.at_word("TABLE", "TABLES"):
        return False                                # RENAME USER
    c.i += 1
    c.skip_if_exists()
    while True:
        old = c.table()
        _skip_wait(c)
        if not c.at_word("TO"):
            raise _Doubt
        c.i += 1
        if t.is_table(*old) or t.is_table(*c.table()):
            return True
        if c.peek() is None:
            return False
        if not c.at_punct(","):
            raise _Doubt
        c.i += 1


def _skip_wait(c: _Cursor) -> None:
    """MariaDB's WAIT n / NOWAIT after a table name."""
    if c.at_word("NOWAIT"):
        c.i += 1
    elif c.at_word("WAIT"):
        c.i += 2


def _query_drop(c: _Cursor, t: _Target) -> bool:
    temporary = bool(c.skip_words("TEMPORARY"))
    if c.at_word("TABLE", "TABLES", "SEQUENCE"):
        c.i += 1
        c.skip_if_exists()
        if temporary:
            return False                            # only ever a session's own table
        while True:
            if t.is_table(*c.table()):
                return True
            if not c.at_punct(","):
                return False
            c.i += 1
    if c.at_word("INDEX"):
        return c.find_word("ON") and _next_table_is(c, t)
    if c.at_word("DATABASE", "SCHEMA"):
        c.i += 1
        c.skip_if_exists()
        return t.is_database(c.name())
    return False


def _next_table_is(c: _Cursor, t: _Target) -> bool:
    c.i += 1
    return t.is_table(*c.table())


def _query_truncate(c: _Cursor, t: _Target) -> bool:
    c.skip_words("TABLE")
    return t.is_table(*c.table())


_CREATED_OBJECTS = {"TABLE", "SEQUENCE", "INDEX", "VIEW", "USER", "ROLE", "DATABASE",
                    "SCHEMA", "TRIGGER", "PROCEDURE", "FUNCTION", "EVENT", "SERVER",
                    "TABLESPACE", "LOGFILE", "PACKAGE", "RESOURCE", "SPATIAL"}


def _query_create(c: _Cursor, t: _Target) -> bool:
    replace = temporary = False
    while c.peek() is not None:
        tok = c.toks[c.i]
        if tok.is_word("OR") and c.at_word("REPLACE", ahead=1):
            replace = True
        elif tok.is_word("TEMPORARY"):
            temporary = True
        elif tok.is_word("SPATIAL") and c.at_word("INDEX", ahead=1):
            pass
        elif tok.kind == "word" and tok.text.upper() in _CREATED_OBJECTS:
            break
        c.i += 1
    else:
        raise _Doubt
    kind = c.toks[c.i].text.upper()
    c.i += 1
    if kind == "INDEX":
        return c.find_word("ON") and _next_table_is(c, t)
    if kind not in ("TABLE", "SEQUENCE") or temporary:
        return False
    if_not_exists = c.skip_if_exists()
    if not t.is_table(*c.table()):
        return False                                # CREATE TABLE x LIKE t, ... SELECT FROM t
    if replace or not if_not_exists:
        return True                                 # replaces the table, or one was dropped
    # IF NOT EXISTS on an existing table changes nothing, unless rows come with it.
    return c.find_word("SELECT")


def _query_insert(c: _Cursor, t: _Target) -> bool:
    """INSERT/REPLACE write their target only; a SELECT's tables are read."""
    c.skip_words("LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE")
    c.skip_words("INTO")
    return t.is_table(*c.table())


def _query_load(c: _Cursor, t: _Target) -> bool:
    if not c.at_word("DATA", "XML"):
        return False                                # LOAD INDEX INTO CACHE
    while c.find_word("INTO"):
        c.i += 1
        if c.at_word("TABLE"):
            return _next_table_is(c, t)
    raise _Doubt


_Ref = tuple[str | None, str, str | None]   # database, table, alias
_REF_ENDS = {"SET", "WHERE", "ORDER", "LIMIT", "RETURNING", "USING", "FROM"}
_NOT_ALIAS = {"ON", "USING", "JOIN", "INNER", "CROSS", "LEFT", "RIGHT", "NATURAL", "OUTER",
              "STRAIGHT_JOIN", "USE", "IGNORE", "FORCE", "PARTITION", *_REF_ENDS}


def _table_refs(c: _Cursor, ends: set[str]) -> list[_Ref]:
    """The tables of a FROM-like list (joins, aliases, parenthesized joins) up to one of
    `ends`; derived tables (subqueries) are read sources and left out."""
    refs: list[_Ref] = []
    expect, depth = True, 0
    while c.i < len(c.toks):
        tok = c.toks[c.i]
        if depth == 0 and tok.is_word(*ends):
            break
        if not expect:
            if tok.is_punct("("):
                c.skip_parens()                     # ON (...), USING (...), index hints
                continue
            if tok.is_punct(")"):
                depth -= 1
            expect = tok.is_punct(",") or tok.is_word("JOIN", "STRAIGHT_JOIN")
            c.i += 1
        elif tok.is_punct("("):
            if c.at_word("SELECT", "WITH", "VALUES", "TABLE", ahead=1):
                c.skip_parens()
                expect = False
            else:
                depth += 1
                c.i += 1
        elif tok.is_word("LATERAL", "JSON_TABLE"):
            c.i += 1
            if c.at_punct("("):
                c.skip_parens()
            expect = False
        elif tok.kind == "punct":
            raise _Doubt
        else:
            database, name = c.table()
            if c.at_word("PARTITION"):
                c.i += 1
                c.skip_parens()
            alias = None
            if c.at_word("AS"):
                c.i += 1
                alias = c.name()
            elif c.at_name() and not c.at_word(*_NOT_ALIAS):
                alias = c.name()
            refs.append((database, name, alias))
            expect = False
    return refs


def _resolve(name: tuple[str | None, str], refs: list[_Ref], t: _Target) -> bool:
    """Is `name`, a table or an alias of the statement's tables, our table?"""
    database, word = name
    if database is None:
        # A bare name is an alias of the statement's tables, else one of its tables of
        # that name, in whatever database the reference names (`UPDATE other,
        # shop.orders SET orders.v = 1` writes shop.orders).
        for ref_db, ref_name, alias in refs:
            if alias is not None and t.same(alias, word):
                return t.is_table(ref_db, ref_name)
        for ref_db, ref_name, alias in refs:
            if alias is None and t.same(ref_name, word):
                return t.is_table(ref_db, ref_name)
    return t.is_table(database, word)


def _query_update(c: _Cursor, t: _Target) -> bool:
    c.skip_words("LOW_PRIORITY", "IGNORE")
    refs = _table_refs(c, {"SET"})
    ours = [r for r in refs if t.is_table(r[0], r[1])]
    if not ours or not c.at_word("SET"):
        if ours:
            raise _Doubt
        return False
    if len(refs) == 1:
        return True
    c.i += 1
    # Several tables: only those whose columns are assigned are written.
    for assignment in _assignments(c):
        names = [tok.text for tok in assignment if tok.kind != "punct"]
        if len(names) == 1:
            return True                             # an unqualified column: could be ours
        if len(names) == 2 and _resolve((None, names[0]), refs, t):
            return True
        if len(names) == 3 and t.is_table(names[0], names[1]):
            return True
    return False


def _assignments(c: _Cursor) -> list[list[Tok]]:
    """The column (as its tokens) of each `col = expr` after SET."""
    columns: list[list[Tok]] = []
    while c.i < len(c.toks):
        start = c.i
        while c.i < len(c.toks) and not c.toks[c.i].is_punct("="):
            c.i += 1
        columns.append(c.toks[start:c.i])
        depth = 0
        while c.i < len(c.toks):
            tok = c.toks[c.i]
            depth += tok.is_punct("(") - tok.is_punct(")")
            if depth == 0 and (tok.is_punct(",") or tok.is_word("WHERE", "ORDER", "LIMIT")):
                break
            c.i += 1
        if c.i >= len(c.toks) or not c.toks[c.i].is_punct(","):
            break
        c.i += 1
    return columns


def _query_delete(c: _Cursor, t: _Target) -> bool:
    c.skip_words("LOW_PRIORITY", "QUICK", "IGNORE")
    single = c.at_word("FROM")
    if single:
        c.i += 1
    targets: list[tuple[str | None, str]] = []
    while True:
        targets.append(c.table())
        if c.at_punct(".") and c.at_punct("*", ahead=1):
            c.i += 2
        if not c.at_punct(","):
            break
        c.i += 1
    if single and not c.at_word("USING"):
        return t.is_table(*targets[0])              # DELETE FROM t [AS a] WHERE ...
    if not c.at_word("USING", "FROM"):
        raise _Doubt
    c.i += 1
    refs = _table_refs(c, {"WHERE", "ORDER", "LIMIT", "RETURNING"})
    return any(_resolve(name, refs, t) for name in targets)


def _writes_after_with(toks: list[Tok], t: _Target) -> bool:
    """WITH [RECURSIVE] name [(columns)] AS (query) [, ...] then the statement."""
    c = _Cursor(toks)
    c.skip_words("RECURSIVE")
    while True:
        c.name()
        if c.at_punct("("):
            c.skip_parens()
        if not c.at_word("AS"):
            raise _Doubt
        c.i += 1
        c.skip_parens()
        tok = c.peek()
        if tok is None:
            raise _Doubt
        if not tok.is_punct(","):
            return _writes(toks[c.i:], t)
        c.i += 1


_STATEMENT_HANDLERS: dict[str, Callable[[_Cursor, _Target], bool]] = {
    "ALTER": _query_alter, "RENAME": _query_rename, "DROP": _query_drop,
    "TRUNCATE": _query_truncate, "CREATE": _query_create, "INSERT": _query_insert,
    "REPLACE": _query_insert, "LOAD": _query_load, "UPDATE": _query_update,
    "DELETE": _query_delete,
}
