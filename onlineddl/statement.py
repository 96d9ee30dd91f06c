"""Read the operator's --alter text: the clauses to splice, and what they change.

onlineddl applies the operator's clauses verbatim to the shadow table (``ALTER TABLE
<shadow> <clauses>``): the server stays the authority on what DDL means, and nothing is
regenerated. This module only has to (1) cut out the clause text, (2) say what each clause
does to columns and keys, so the copy can map old columns to new ones, and (3) refuse what
an online copy cannot do: rename the table, foreign keys, partitioning, the tool's own
ALGORITHM/LOCK choice, several statements, and anything it does not recognise.

This is the only module that imports sqlglot; its errors become InvalidAlter here. We use
sqlglot's MySQL *tokenizer* (quotes, escapes, comments, unicode names) and classify each
clause by its leading keywords, as the server's grammar does. sqlglot 30's *parser* is not
used for ALTER because, checked against 30.x:
  - table options and ALGORITHM=/LOCK= land in a separate ``options`` list, so the order
    of the clauses is lost;
  - ``ADD COLUMN (a INT, b INT)``, ``CONVERT TO CHARACTER SET``, ``ADD CHECK`` and
    ``DISCARD TABLESPACE`` fall back to an opaque exp.Command;
  - partition clauses raise ParseError, and regenerating rewrites ``UNIQUE KEY`` as ``UNIQUE``.
A second, AST-based classifier that had to agree with this one would only add risk.

Reserved words (PARTITION, LOCK, FOREIGN, REFERENCES, CHECK, ORDER, INDEX, KEY, ...) can only
be names when backtick-quoted, so a bare one is always the keyword; the checks rely on that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Literal

# The package exports Token and TokenType; newer sqlglot.tokens only re-imports them.
from sqlglot import Token, TokenType
from sqlglot.dialects.mysql import MySQL
from sqlglot.errors import SqlglotError

from onlineddl.errors import InvalidAlter


@dataclass(frozen=True)
class ParsedAlter:
    """What the operator's ALTER does. Names are unquoted and as written.

    ``unique_keys_added`` holds the column lists (new-table names) of every UNIQUE or
    PRIMARY key the ALTER creates, inline ones (``ADD c INT UNIQUE``) included: each of
    them can reject rows of the copy.
    """

    clauses: str
    renames: Mapping[str, str]
    dropped: frozenset[str]
    added: frozenset[str]
    modified: frozenset[str]
    unique_keys_added: tuple[tuple[str, ...], ...]
    changes_primary_key: bool
    changes_charset: bool
    kinds: tuple[str, ...]
    # AUTO_INCREMENT=N as a table option: a plain ALTER then sets the counter to N (or
    # past the largest id) instead of keeping the table's own.
    auto_increment: int | None = None


def parse_alter(text: str, *, database: str, table: str) -> ParsedAlter:
    """Classify --alter (clauses only, or a full ALTER TABLE for `table`); refuse the rest."""
    toks = _strip_alter_table(_tokenize(text), database, table)
    builder = _Builder()
    for clause_toks in _split_commas(toks):
        clause = text[clause_toks[0].start : clause_toks[-1].end + 1]
        _classify(_Clause(clause_toks, clause), builder)
    return builder.build(text[toks[0].start : toks[-1].end + 1])


# --- tokens -------------------------------------------------------------------------------


class _Tokenizer(MySQL.Tokenizer):
    # sqlglot reads everything after a leading RENAME or REPLACE as one opaque string
    # (a "command"); "RENAME COLUMN a TO b" must stay words.
    COMMANDS: ClassVar[set[TokenType]] = set()


_STRING_TYPES = {
    TokenType.STRING, TokenType.NATIONAL_STRING, TokenType.HEX_STRING, TokenType.BIT_STRING,
    TokenType.BYTE_STRING, TokenType.RAW_STRING, TokenType.NATIONAL_RAW_STRING,
    TokenType.UNICODE_STRING, TokenType.HEREDOC_STRING,
}


@dataclass(frozen=True)
class _Tok:
    text: str  # a bare word or punctuation as written; a quoted name or a string unquoted
    kind: Literal["word", "name", "string", "punct"]  # "name" is a backtick-quoted name
    start: int
    end: int  # inclusive offsets into the operator's text

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words

    def is_punct(self, punct: str) -> bool:
        return self.kind == "punct" and self.text == punct


def _tokenize(text: str) -> list[_Tok]:
    try:
        raw = _Tokenizer(dialect="mysql").tokenize(text)
    except SqlglotError as e:
        raise InvalidAlter(f"cannot read the --alter text: {e}",
                           hint="check that every quote ' and backtick ` is closed") from e
    comments = [c for t in raw for c in t.comments]
    if any(c.startswith("!") for c in comments) or (not raw and "/*!" in text):
        raise InvalidAlter("executable comments /*! ... */ are not supported in --alter",
                           hint="write the clause without version comments")
    if comments:
        # A trailing "-- note" would swallow whatever the tool appends to the statement.
        raise InvalidAlter("comments are not supported in --alter", hint="remove the comment")
    if not raw:
        raise InvalidAlter("the --alter text is empty",
                           hint="give the clauses to apply, e.g. --alter 'ADD COLUMN c INT NULL'")
    if any(t.token_type == TokenType.SEMICOLON for t in raw):
        raise InvalidAlter("the --alter text contains ';': onlineddl applies exactly one ALTER",
                           hint="remove the ;, give one ALTER (put several changes in it, "
                                "separated by commas)")
    return [tok for t in raw for tok in _to_toks(t)]


def _to_toks(t: Token) -> list[_Tok]:
    if t.token_type == TokenType.IDENTIFIER:
        return [_Tok(t.text, "name", t.start, t.end)]
    if t.token_type in _STRING_TYPES:
        return [_Tok(t.text, "string", t.start, t.end)]
    first = t.text[:1]
    if first.isalnum() or first in ("_", "$"):
        # sqlglot makes one token of "PRIMARY KEY", "ORDER BY", ...: one word each here.
        return [_Tok(w, "word", t.start, t.end) for w in t.text.split()]
    return [_Tok(t.text, "punct", t.start, t.end)]


def _split_commas(toks: list[_Tok]) -> list[list[_Tok]]:
    """Split at commas outside parentheses (strings and names are single tokens already)."""
    parts: list[list[_Tok]] = [[]]
    depth = 0
    for tok in toks:
        depth += tok.is_punct("(") - tok.is_punct(")")
        if depth < 0:
            break
        if depth == 0 and tok.is_punct(","):
            parts.append([])
        else:
            parts[-1].append(tok)
    if depth != 0:
        raise InvalidAlter("unbalanced parentheses in the --alter text",
                           hint="check that every ( has its )")
    if not all(parts):
        raise InvalidAlter("empty clause in the --alter text (a comma too many)",
                           hint="remove the extra comma")
    return parts


def _paren_group(toks: list[_Tok], start: int) -> list[_Tok]:
    """The tokens inside the parentheses that open at `start` (balance is checked already)."""
    depth = 0
    for j in range(start, len(toks)):
        depth += toks[j].is_punct("(") - toks[j].is_punct(")")
        if depth == 0:
            return toks[start + 1 : j]
    return toks[start + 1 :]


def _top_words(toks: list[_Tok]) -> list[str]:
    """Upper-cased bare words outside parentheses: the attributes of a column definition."""
    words: list[str] = []
    depth = 0
    for tok in toks:
        depth += tok.is_punct("(") - tok.is_punct(")")
        if depth == 0 and tok.kind == "word":
            words.append(tok.text.upper())
    return words


def _name(tok: _Tok | None, fragment: str) -> str:
    if tok is None:
        raise InvalidAlter(f"a name is missing in {fragment!r}",
                           hint="complete the clause, e.g. 'DROP COLUMN c'")
    if tok.kind not in ("name", "word"):
        raise InvalidAlter(f"expected a name, found {tok.text!r} in {fragment!r}",
                           hint="write names bare or in backticks (`my name`); "
                                "double quotes make a string in MySQL")
    return tok.text


# --- the full ALTER TABLE form -------------------------------------------------------------

_STATEMENTS = {
    "SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "WITH", "SET", "SHOW", "USE",
    "CALL", "EXPLAIN", "DESCRIBE", "DESC", "GRANT", "REVOKE", "LOAD", "HANDLER", "DO", "BEGIN",
    "START", "COMMIT", "ROLLBACK", "FLUSH", "KILL", "VALUES",
}
# Reserved words only: `DROP user` may drop a column named user.
_OBJECTS = {"TABLE", "DATABASE", "SCHEMA", "TRIGGER", "PROCEDURE", "FUNCTION"}


def _strip_alter_table(toks: list[_Tok], database: str, table: str) -> list[_Tok]:
    """Drop a leading ``ALTER TABLE [db.]table`` after checking it names our table."""
    if not toks[0].is_word("ALTER") or len(toks) < 2:
        return toks
    if toks[1].is_word("ONLINE", "IGNORE") and len(toks) > 2 and toks[2].is_word("TABLE"):
        raise InvalidAlter(f"ALTER {toks[1].text.upper()} TABLE is not supported",
                           hint="write plain ALTER TABLE, or only the clauses: onlineddl "
                                "chooses the locking, and IGNORE would silently drop rows")
    if not toks[1].is_word("TABLE"):
        return toks  # "ALTER [COLUMN] c SET DEFAULT 1" is a clause
    if len(toks) > 2 and toks[2].is_word("IF"):
        raise _if_exists_error("ALTER TABLE IF EXISTS")
    fragment = "ALTER TABLE"
    name = _name(toks[2] if len(toks) > 2 else None, fragment)
    rest = toks[3:]
    if rest and rest[0].is_punct("."):
        if name != database:
            raise InvalidAlter(f"the ALTER names database {name!r}, but the table to change is "
                               f"in {database!r}",
                               hint="give ALTER TABLE for the same table, or only the clauses")
        name = _name(rest[1] if len(rest) > 1 else None, fragment)
        rest = rest[2:]
    if name != table:
        raise InvalidAlter(f"the ALTER names table {name!r}, but the table to change is "
                           f"{table!r}",
                           hint="give ALTER TABLE for the same table, or only the clauses")
    if not rest:
        raise InvalidAlter("the ALTER TABLE has no clauses",
                           hint="add the changes, e.g. 'ALTER TABLE t ADD COLUMN c INT NULL'")
    return rest


# --- classification ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clause:
    toks: list[_Tok]
    text: str  # as the operator wrote it, for messages

    def word(self, i: int) -> str:
        """The bare word at i, upper-cased; "" past the end or for names, strings, punctuation."""
        if i < len(self.toks) and self.toks[i].kind == "word":
            return self.toks[i].text.upper()
        return ""

    def name(self, i: int) -> str:
        return _name(self.toks[i] if i < len(self.toks) else None, self.text)

    def refuse(self, what: str, hint: str) -> InvalidAlter:
        return InvalidAlter(f"{what}: {self.text!r}", hint=hint)


@dataclass
class _Builder:
    renames: dict[str, str] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)
    added: set[str] = field(default_factory=set)
    modified: set[str] = field(default_factory=set)
    unique_keys: list[tuple[str, ...]] = field(default_factory=list)
    primary_key: bool = False
    charset: bool = False
    kinds: list[str] = field(default_factory=list)
    auto_increment: int | None = None

    def build(self, clauses: str) -> ParsedAlter:
        return ParsedAlter(
            clauses=clauses, renames=MappingProxyType(dict(self.renames)),
            dropped=frozenset(self.dropped), added=frozenset(self.added),
            modified=frozenset(self.modified), unique_keys_added=tuple(self.unique_keys),
            changes_primary_key=self.primary_key, changes_charset=self.charset,
            kinds=tuple(self.kinds), auto_increment=self.auto_increment,
        )


def _classify(c: _Clause, b: _Builder) -> None:
    _refuse_statement(c)
    _refuse_anywhere(c)
    first = c.word(0)
    if first in _VERBS:
        _VERBS[first](c, b)
    elif first in _TABLE_OPTIONS or (first == "DEFAULT" and c.word(1) in _CHARSET_WORDS):
        b.kinds.append("table_option")
        b.charset |= _mentions_charset(_top_words(c.toks))
        _auto_increment_option(c, b)
    else:
        raise c.refuse("unknown or unsupported ALTER clause", hint=_SUPPORTED)


_SUPPORTED = ("supported: ADD/DROP/MODIFY/CHANGE [COLUMN], RENAME COLUMN/INDEX, ALTER COLUMN "
              "SET/DROP DEFAULT, ADD/DROP INDEX, ADD UNIQUE, ADD/DROP PRIMARY KEY, "
              "CONVERT TO CHARACTER SET, table options (ENGINE=, COMMENT=, ...), FORCE")


def _auto_increment_option(c: _Clause, b: _Builder) -> None:
    """`AUTO_INCREMENT [=] N` among a clause's table options (several may follow each
    other without commas)."""
    for i, tok in enumerate(c.toks):
        if not tok.is_word("AUTO_INCREMENT"):
            continue
        at = i + 2 if i + 1 < len(c.toks) and c.toks[i + 1].is_punct("=") else i + 1
        value = c.toks[at].text if at < len(c.toks) else ""
        if not value.isdigit():
            raise c.refuse("AUTO_INCREMENT needs a whole number",
                           hint="write e.g. AUTO_INCREMENT=1000")
        b.auto_increment = int(value)


def _refuse_statement(c: _Clause) -> None:
    first, second = c.word(0), c.word(1)
    if (first in _STATEMENTS or (first == "TRUNCATE" and second != "PARTITION")
            or (second in _OBJECTS and first != "RENAME")):
        raise c.refuse("the --alter text holds another statement, not ALTER TABLE clauses",
                       hint="give the clauses to apply to the table, e.g. "
                            "'ADD COLUMN c INT NULL', or one 'ALTER TABLE <table> ...'")


def _refuse_anywhere(c: _Clause) -> None:
    """Refuse keywords that are unsupported wherever they appear in a clause."""
    words = [t.text.upper() if t.kind in ("word", "punct") else "" for t in c.toks]
    for w, nxt in zip(words, [*words[1:], ""], strict=True):
        if "PARTITION" in (w, nxt) or (w in ("REMOVE", "UPGRADE") and nxt == "PARTITIONING"):
            raise c.refuse("partition management is not supported",
                           hint="run partition changes directly with ALTER TABLE, "
                                "separately from onlineddl")
        if w in ("FOREIGN", "REFERENCES"):
            raise c.refuse("foreign keys are not supported yet",
                           hint="leave the foreign key out; change it outside onlineddl")
        if w == "CHECK":
            raise c.refuse("CHECK constraints are not supported",
                           hint="add or drop the CHECK constraint with a plain ALTER TABLE "
                                "after the migration")
        if w == "LOCK" or (w == "ALGORITHM" and nxt in _ALGORITHM_NEXT):
            raise c.refuse("ALGORITHM= and LOCK= are chosen by onlineddl",
                           hint="remove the ALGORITHM=/LOCK= clause")
        if w == "ORDER" and nxt == "BY":
            raise c.refuse("ORDER BY is not supported",
                           hint="remove it: InnoDB keeps rows in primary key order anyway")
        if w == "IF" and nxt in ("EXISTS", "NOT"):
            raise _if_exists_error(c.text)


_ALGORITHM_NEXT = {"=", "DEFAULT", "INSTANT", "INPLACE", "COPY", "NOCOPY"}


def _if_exists_error(fragment: str) -> InvalidAlter:
    return InvalidAlter(f"IF [NOT] EXISTS is not supported: {fragment!r}",
                        hint="write the clause without IF [NOT] EXISTS: onlineddl must know "
                             "exactly what changes")


# --- one function per leading verb ---------------------------------------------------------

_KEY_WORDS = ("INDEX", "KEY", "UNIQUE", "PRIMARY", "CONSTRAINT", "FULLTEXT", "SPATIAL")


def _add(c: _Clause, b: _Builder) -> None:
    w = c.word(1)
    if w in ("INDEX", "KEY", "FULLTEXT", "SPATIAL"):
        b.kinds.append("add_index")
    elif w in ("UNIQUE", "PRIMARY"):
        _add_key(c, b, 1)
    elif w == "CONSTRAINT":
        # ADD CONSTRAINT [symbol] {UNIQUE|PRIMARY KEY} ...
        at = 2 if c.word(2) in ("UNIQUE", "PRIMARY") else 3
        if c.word(at) not in ("UNIQUE", "PRIMARY"):
            raise c.refuse("unknown or unsupported ALTER clause", hint=_SUPPORTED)
        _add_key(c, b, at)
    else:
        at = 2 if w == "COLUMN" else 1
        if at < len(c.toks) and c.toks[at].is_punct("("):
            for part in _split_commas(_paren_group(c.toks, at)):
                _add_column(c, b, part)
        else:
            _add_column(c, b, c.toks[at:])
        b.kinds.append("add_column")


def _add_column(c: _Clause, b: _Builder, definition: list[_Tok]) -> None:
    if definition and definition[0].is_word(*_KEY_WORDS):
        raise c.refuse("index definitions inside ADD (...) are not supported",
                       hint="write them as separate clauses: ADD INDEX ..., ADD UNIQUE ...")
    name = _name(definition[0] if definition else None, c.text)
    b.added.add(name)
    _inline_keys(name, definition[1:], b)


def _inline_keys(name: str, definition: list[_Tok], b: _Builder) -> None:
    """A column definition can create a key: `c INT UNIQUE [KEY]`, `c INT [PRIMARY] KEY`."""
    words = _top_words(definition)
    if "UNIQUE" in words or "PRIMARY" in words or "KEY" in words:
        b.unique_keys.append((name,))
    if "PRIMARY" in words or ("KEY" in words and "UNIQUE" not in words):
        b.primary_key = True


def _add_key(c: _Clause, b: _Builder, at: int) -> None:
    """ADD ... {UNIQUE [INDEX|KEY] [name] | PRIMARY KEY} [USING ...] (key_part, ...)."""
    opening = next((j for j in range(at, len(c.toks)) if c.toks[j].is_punct("(")), None)
    if opening is None:
        raise c.refuse("the key has no column list",
                       hint="give the columns, e.g. ADD UNIQUE (a, b)")
    columns: list[str] = []
    for part in _split_commas(_paren_group(c.toks, opening)):
        if part[0].is_punct("("):
            raise c.refuse("a UNIQUE or PRIMARY key on an expression is not supported",
                           hint="put the key on a generated column, or add it after the migration")
        columns.append(_name(part[0], c.text))  # a prefix such as c(10) names column c
    b.unique_keys.append(tuple(columns))
    if c.word(at) == "PRIMARY":
        b.primary_key = True
        b.kinds.append("add_primary_key")
    else:
        b.kinds.append("add_unique")


def _drop(c: _Clause, b: _Builder) -> None:
    w = c.word(1)
    if w == "PRIMARY" and c.word(2) == "KEY":
        b.primary_key = True
        b.kinds.append("drop_primary_key")
    elif w in ("INDEX", "KEY"):
        # DROP INDEX `PRIMARY` is how the server names dropping the primary key.
        is_primary = c.name(2).upper() == "PRIMARY"
        b.primary_key |= is_primary
        b.kinds.append("drop_primary_key" if is_primary else "drop_index")
    elif w == "CONSTRAINT":
        raise c.refuse("DROP CONSTRAINT is not supported (it could be any kind of constraint)",
                       hint="use DROP INDEX <name> for a unique key")
    else:
        b.dropped.add(c.name(2 if w == "COLUMN" else 1))
        b.kinds.append("drop_column")


def _modify(c: _Clause, b: _Builder) -> None:
    at = 2 if c.word(1) == "COLUMN" else 1
    name = c.name(at)
    b.modified.add(name)
    _column_change(name, c.toks[at + 1 :], b)
    b.kinds.append("modify_column")


def _change(c: _Clause, b: _Builder) -> None:
    at = 2 if c.word(1) == "COLUMN" else 1
    old, new = c.name(at), c.name(at + 1)
    b.modified.add(old)
    if old != new:
        b.renames[old] = new
    _column_change(new, c.toks[at + 2 :], b)
    b.kinds.append("change_column")


def _column_change(name: str, definition: list[_Tok], b: _Builder) -> None:
    _inline_keys(name, definition, b)
    b.charset |= _mentions_charset(_top_words(definition))


def _rename(c: _Clause, b: _Builder) -> None:
    w = c.word(1)
    if w not in ("COLUMN", "INDEX", "KEY"):
        raise c.refuse("renaming the table is not supported",
                       hint="run RENAME TABLE separately, after the migration")
    if c.word(3) != "TO":
        raise c.refuse("expected RENAME {COLUMN|INDEX} old TO new", hint=_SUPPORTED)
    old, new = c.name(2), c.name(4)
    if w == "COLUMN":
        if old != new:
            b.renames[old] = new
        b.kinds.append("rename_column")
    else:
        b.kinds.append("rename_index")


def _alter(c: _Clause, b: _Builder) -> None:
    w = c.word(1)
    if w in ("INDEX", "KEY", "CONSTRAINT"):
        raise c.refuse(f"ALTER {w} is not supported",
                       hint="run it directly with ALTER TABLE: it changes metadata only")
    at = 2 if w == "COLUMN" else 1
    c.name(at)
    if (c.word(at + 1), c.word(at + 2)) not in (("SET", "DEFAULT"), ("DROP", "DEFAULT")):
        raise c.refuse("only SET DEFAULT and DROP DEFAULT are supported in ALTER COLUMN",
                       hint="run other column changes (e.g. visibility) directly with ALTER TABLE")
    b.kinds.append("alter_column_default")


def _convert_to(c: _Clause, b: _Builder) -> None:
    if c.word(1) != "TO" or not _mentions_charset([c.word(2), c.word(3)]):
        raise c.refuse("expected CONVERT TO CHARACTER SET ...", hint=_SUPPORTED)
    b.charset = True
    b.kinds.append("convert_charset")


def _force(c: _Clause, b: _Builder) -> None:
    if len(c.toks) != 1:
        raise c.refuse("unknown or unsupported ALTER clause", hint=_SUPPORTED)
    b.kinds.append("force")


def _tablespace(c: _Clause, b: _Builder) -> None:
    raise c.refuse("DISCARD/IMPORT TABLESPACE is not a schema change",
                   hint="run it directly with ALTER TABLE")


_VERBS: dict[str, Callable[[_Clause, _Builder], None]] = {
    "ADD": _add, "DROP": _drop, "MODIFY": _modify, "CHANGE": _change, "RENAME": _rename,
    "ALTER": _alter, "CONVERT": _convert_to, "FORCE": _force,
    "DISCARD": _tablespace, "IMPORT": _tablespace,
}

_CHARSET_WORDS = ("CHARSET", "CHARACTER", "COLLATE")

# MySQL 8 and MariaDB table options; several may follow each other without commas.
_TABLE_OPTIONS = {
    *_CHARSET_WORDS, "AUTOEXTEND_SIZE", "AUTO_INCREMENT", "AVG_ROW_LENGTH", "CHECKSUM",
    "COMMENT", "COMPRESSION", "CONNECTION", "DATA", "DELAY_KEY_WRITE", "ENCRYPTION",
    "ENGINE", "ENGINE_ATTRIBUTE", "INSERT_METHOD", "KEY_BLOCK_SIZE", "MAX_ROWS", "MIN_ROWS",
    "PACK_KEYS", "PASSWORD", "ROW_FORMAT", "SECONDARY_ENGINE", "SECONDARY_ENGINE_ATTRIBUTE",
    "STATS_AUTO_RECALC", "STATS_PERSISTENT", "STATS_SAMPLE_PAGES", "TABLESPACE", "UNION",
    "PAGE_CHECKSUM", "PAGE_COMPRESSED", "PAGE_COMPRESSION_LEVEL", "TRANSACTIONAL",
    "ENCRYPTED", "ENCRYPTION_KEY_ID",
}


def _mentions_charset(words: list[str]) -> bool:
    pairs = zip(words, [*words[1:], ""], strict=True)
    return any(w in ("CHARSET", "COLLATE") or (w, nxt) == ("CHARACTER", "SET") for w, nxt in pairs)


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
    head = text.lstrip()
    if head[:1].isalpha():
        first = head.split(None, 1)[0].split("(", 1)[0].split("`", 1)[0].upper()
        if first not in _CHANGING:
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


def _binlog_tokens(text: str) -> list[_Tok]:
    """Tokens, with the content of executable comments (/*! ... */, MariaDB's /*M! ... */)
    in place: the server runs it. Other comments are dropped."""
    out: list[_Tok] = []
    after = 0
    for t in _Tokenizer(dialect="mysql").tokenize(text):
        out += _executable(text[after:t.start])
        out += _to_toks(t)
        after = t.end + 1
    return out + _executable(text[after:])


def _executable(gap: str) -> list[_Tok]:
    """Tokens of the executable comments in the text between two tokens, which holds only
    blanks and comments."""
    out: list[_Tok] = []
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


def _split_statements(toks: list[_Tok]) -> list[list[_Tok]]:
    """Statements separated by ';'. A stored program's body is part of its definition."""
    if toks and toks[0].is_word("CREATE") and any(
            t.is_word("PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE")
            for t in toks[1:8]):
        return [toks]
    parts: list[list[_Tok]] = [[]]
    for tok in toks:
        if tok.is_punct(";"):
            parts.append([])
        else:
            parts[-1].append(tok)
    return [p for p in parts if p]


def _writes(toks: list[_Tok], target: _Target) -> bool:
    verb = toks[0].text.upper() if toks[0].kind == "word" else ""
    if verb == "WITH":
        return _writes_after_with(toks, target)
    handler = _STATEMENT_HANDLERS.get(verb)
    return handler(_Cursor(toks), target) if handler else False


class _Cursor:
    """Reads a statement's tokens left to right; a surprise is a doubt."""

    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.i = 1                                  # after the verb

    def peek(self, ahead: int = 0) -> _Tok | None:
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
        for ref_db, ref_name, alias in refs:
            if alias is not None and t.same(alias, word):
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


def _assignments(c: _Cursor) -> list[list[_Tok]]:
    """The column (as its tokens) of each `col = expr` after SET."""
    columns: list[list[_Tok]] = []
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


def _writes_after_with(toks: list[_Tok], t: _Target) -> bool:
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
