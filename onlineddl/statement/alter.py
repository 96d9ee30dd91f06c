"""Read the operator's --alter text: the clauses to splice, and what they change.

onlineddl applies the operator's clauses verbatim to the shadow table (``ALTER TABLE
<shadow> <clauses>``): the server stays the authority on what DDL means, and nothing is
regenerated. This module only has to (1) cut out the clause text, (2) say what each clause
does to columns and keys, so the copy can map old columns to new ones, and (3) refuse what
an online copy cannot do: rename the table, foreign keys, partitioning, the tool's own
ALGORITHM/LOCK choice, several statements, and anything it does not recognise.

This package (onlineddl/statement/) is the only one that imports sqlglot; its errors
become InvalidAlter here. We use
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

from sqlglot import TokenType
from sqlglot.errors import SqlglotError

from onlineddl.errors import InvalidAlter
from onlineddl.statement.tokens import Tok, Tokenizer, to_toks


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
    # [foreign keys] DROP FOREIGN KEY names; ADD [CONSTRAINT [name]] FOREIGN KEY names
    # ("" where the server names it). The shadow never holds T's constraints under
    # their names, so it gets the clauses without the DROP FOREIGN KEYs (None: all).
    foreign_keys_dropped: tuple[str, ...] = ()
    foreign_keys_added: tuple[str, ...] = ()
    shadow_clauses: str | None = None

    @property
    def clauses_for_shadow(self) -> str:
        """What runs on the shadow ("" when the ALTER only drops foreign keys)."""
        return self.clauses if self.shadow_clauses is None else self.shadow_clauses


def parse_alter(text: str, *, database: str, table: str) -> ParsedAlter:
    """Classify --alter (clauses only, or a full ALTER TABLE for `table`); refuse the rest."""
    toks = _strip_alter_table(_tokenize(text), database, table)
    builder = _Builder(database=database, table=table)
    for clause_toks in _split_commas(toks):
        clause = text[clause_toks[0].start : clause_toks[-1].end + 1]
        parsed = _Clause(clause_toks, clause)
        _classify(parsed, builder)
        if not _drops_foreign_key(parsed):
            builder.shadow_parts.append(clause)
    return builder.build(text[toks[0].start : toks[-1].end + 1])


# --- tokens -------------------------------------------------------------------------------


def _tokenize(text: str) -> list[Tok]:
    try:
        raw = Tokenizer(dialect="mysql").tokenize(text)
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
    return [tok for t in raw for tok in to_toks(t)]


def _split_commas(toks: list[Tok]) -> list[list[Tok]]:
    """Split at commas outside parentheses (strings and names are single tokens already)."""
    parts: list[list[Tok]] = [[]]
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


def _paren_group(toks: list[Tok], start: int) -> list[Tok]:
    """The tokens inside the parentheses that open at `start` (balance is checked already)."""
    depth = 0
    for j in range(start, len(toks)):
        depth += toks[j].is_punct("(") - toks[j].is_punct(")")
        if depth == 0:
            return toks[start + 1 : j]
    return toks[start + 1 :]


def _top_words(toks: list[Tok]) -> list[str]:
    """Upper-cased bare words outside parentheses: the attributes of a column definition."""
    words: list[str] = []
    depth = 0
    for tok in toks:
        depth += tok.is_punct("(") - tok.is_punct(")")
        if depth == 0 and tok.kind == "word":
            words.append(tok.text.upper())
    return words


def _name(tok: Tok | None, fragment: str) -> str:
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


def _strip_alter_table(toks: list[Tok], database: str, table: str) -> list[Tok]:
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
    toks: list[Tok]
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
    database: str = ""
    table: str = ""
    fk_dropped: list[str] = field(default_factory=list)
    fk_added: list[str] = field(default_factory=list)
    shadow_parts: list[str] = field(default_factory=list)

    def build(self, clauses: str) -> ParsedAlter:
        return ParsedAlter(
            clauses=clauses, renames=MappingProxyType(dict(self.renames)),
            dropped=frozenset(self.dropped), added=frozenset(self.added),
            modified=frozenset(self.modified), unique_keys_added=tuple(self.unique_keys),
            changes_primary_key=self.primary_key, changes_charset=self.charset,
            kinds=tuple(self.kinds), auto_increment=self.auto_increment,
            foreign_keys_dropped=tuple(self.fk_dropped),
            foreign_keys_added=tuple(self.fk_added),
            shadow_clauses=", ".join(self.shadow_parts) if self.fk_dropped else None,
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
        if w in ("FOREIGN", "REFERENCES") and not _is_foreign_key_clause(c):
            raise c.refuse("REFERENCES in a column definition is not supported",
                           hint="write the constraint as its own clause: ADD [CONSTRAINT "
                                "name] FOREIGN KEY (column) REFERENCES parent (column)")
        if (w, nxt) == ("SYSTEM", "VERSIONING"):
            raise c.refuse("system versioning is not supported (MariaDB): the copy would "
                           "hold only the current rows, not their history",
                           hint="run this ALTER with a plain ALTER TABLE")
        if w == "CHECK" and c.word(0) == "DROP":
            raise c.refuse("dropping a CHECK constraint is not supported",
                           hint="drop it with a plain ALTER TABLE (metadata only, no "
                                "copy) before or after the migration")
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
    if _is_foreign_key_clause(c):
        _add_foreign_key(c, b)
    elif w in ("INDEX", "KEY", "FULLTEXT", "SPATIAL"):
        b.kinds.append("add_index")
    elif w in ("UNIQUE", "PRIMARY"):
        _add_key(c, b, 1)
    elif w == "CHECK" or (w == "CONSTRAINT" and "CHECK" in (c.word(2), c.word(3))):
        # ADD [CONSTRAINT [symbol]] CHECK (expr): the new table gets it from the shadow's
        # ALTER; a row of the copy or of a flush that fails it stops the run (DataError),
        # as it fails the plain ALTER.
        b.kinds.append("add_check")
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


def _add_column(c: _Clause, b: _Builder, definition: list[Tok]) -> None:
    if definition and definition[0].is_word(*_KEY_WORDS):
        raise c.refuse("index definitions inside ADD (...) are not supported",
                       hint="write them as separate clauses: ADD INDEX ..., ADD UNIQUE ...")
    name = _name(definition[0] if definition else None, c.text)
    b.added.add(name)
    _inline_keys(name, definition[1:], b)


def _inline_keys(name: str, definition: list[Tok], b: _Builder) -> None:
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
    if _drops_foreign_key(c):
        b.fk_dropped.append(c.name(3))
        b.kinds.append("drop_foreign_key")
    elif w == "PRIMARY" and c.word(2) == "KEY":
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


# --- [foreign keys] ADD / DROP FOREIGN KEY (how they run: onlineddl/foreignkeys.py) -----

def _is_foreign_key_clause(c: _Clause) -> bool:
    """ADD [CONSTRAINT [name]] FOREIGN KEY ..., or DROP FOREIGN KEY name."""
    if c.word(0) == "ADD":
        return c.word(1) == "FOREIGN" or (c.word(1) == "CONSTRAINT" and "FOREIGN" in
                                          (c.word(2), c.word(3)))
    return _drops_foreign_key(c)


def _drops_foreign_key(c: _Clause) -> bool:
    return c.word(0) == "DROP" and c.word(1) == "FOREIGN" and c.word(2) == "KEY"


_CHANGING_RULES = ("CASCADE", "SET")   # SET NULL, SET DEFAULT


def _add_foreign_key(c: _Clause, b: _Builder) -> None:
    named = c.word(1) == "CONSTRAINT" and c.word(2) != "FOREIGN"
    words = [t.text.upper() if t.kind == "word" else "" for t in c.toks]
    if "REFERENCES" not in words:
        raise c.refuse("the foreign key has no REFERENCES", hint=_SUPPORTED)
    at = words.index("REFERENCES") + 1
    parent = c.name(at)
    if at + 2 < len(c.toks) and c.toks[at + 1].is_punct("."):
        parent = c.name(at + 2) if parent == b.database else ""
    if parent == b.table:
        raise c.refuse("a foreign key from the table to itself is not supported (the swap's "
                       "RENAME would move it to the old table)",
                       hint="add it with a plain ALTER TABLE after the migration")
    for i, w in enumerate(words[:-2]):
        if w == "ON" and words[i + 1] in ("DELETE", "UPDATE") and \
                words[i + 2] in _CHANGING_RULES:
            raise c.refuse(f"ON {words[i + 1]} {words[i + 2]} is not supported: the server "
                           "would apply it to the new table alone during the run",
                           hint="add the constraint with RESTRICT or NO ACTION, or with a "
                                "plain ALTER TABLE after the migration")
    b.fk_added.append(c.name(2) if named else "")
    b.kinds.append("add_foreign_key")


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


def _column_change(name: str, definition: list[Tok], b: _Builder) -> None:
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
