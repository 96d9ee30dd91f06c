"""What the user may do, read from the server's own `SHOW GRANTS` lines.

The lines are parsed into (privileges, level) records, not searched for substrings: a
grant on another database, a column-level grant, or a role nobody enabled must not
count. The flavor supplies the lines (flavor.grant_lines): MariaDB's SHOW GRANTS
already includes the enabled role's grants (and the roles granted to it); MySQL 8
expands the active roles with `SHOW GRANTS ... USING`. MySQL's partial revokes
(`REVOKE ... ON db.* FROM ...`) take privileges away again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_TOKEN = re.compile(r"`(?:[^`]|``)*`|'(?:[^'\\]|\\.)*'|\w+|\S")


@dataclass(frozen=True)
class Grant:
    revoke: bool
    privileges: frozenset[str]   # upper case, e.g. "LOCK TABLES"; "ALL" for ALL [PRIVILEGES]
    database: str                # "*" for *.*, else the name or LIKE pattern
    table: str                   # "*" for a database-level grant


def parse(lines: Iterable[str]) -> list[Grant]:
    """The privilege grants among SHOW GRANTS lines; role grants, PROXY and routine
    grants, and column-level privileges are left out (none covers a whole table)."""
    out = []
    for line in lines:
        grant = _parse_line(line)
        if grant is not None:
            out.append(grant)
    return out


def _parse_line(line: str) -> Grant | None:
    tokens = _TOKEN.findall(line)
    if not tokens or tokens[0].upper() not in ("GRANT", "REVOKE"):
        return None
    try:
        on = next(i for i, t in enumerate(tokens) if t.upper() == "ON" and _depth(tokens, i) == 0)
    except StopIteration:
        return None   # GRANT role TO user
    privileges = _privileges(tokens[1:on])
    at = on + 1
    if tokens[at].upper() in ("FUNCTION", "PROCEDURE", "PACKAGE"):
        return None
    if tokens[at].upper() == "TABLE":
        at += 1
    database, table = _name(tokens[at]), "*"
    if at + 2 < len(tokens) and tokens[at + 1] == ".":
        table = _name(tokens[at + 2])
    elif database != "*":
        return None   # `ON tbl` relative to a default database: not in SHOW GRANTS output
    if not privileges or "PROXY" in privileges:
        return None
    return Grant(tokens[0].upper() == "REVOKE", frozenset(privileges), database, table)


def _depth(tokens: list[str], index: int) -> int:
    depth = 0
    for t in tokens[:index]:
        depth += 1 if t == "(" else -1 if t == ")" else 0
    return depth


def _privileges(tokens: list[str]) -> set[str]:
    """`SELECT (a, b), INSERT, LOCK TABLES` -> {"INSERT", "LOCK TABLES"}: a privilege
    with a column list covers only those columns, so it is left out."""
    out: set[str] = set()
    words: list[str] = []
    depth, columns = 0, False
    for t in [*tokens, ","]:
        if t == "(":
            depth, columns = depth + 1, True
        elif t == ")":
            depth -= 1
        elif t == "," and depth == 0:
            name = " ".join(words).upper()
            if name and not columns:
                out.add("ALL" if name in ("ALL", "ALL PRIVILEGES") else name)
            words, columns = [], False
        elif depth == 0:
            words.append(t)
    return out


def _name(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1].replace("``", "`")
    return token


def _like(pattern: str, name: str, fold: bool) -> bool:
    """MySQL's database-grant patterns: % and _ are wildcards, \\% and \\_ literal."""
    regex = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        regex.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    flags = re.IGNORECASE | re.DOTALL if fold else re.DOTALL
    return re.fullmatch("".join(regex), name, flags) is not None


def holds(grants: list[Grant], privilege: str, database: str, table: str | None = None,
          *, fold: bool = False) -> bool:
    """Does the user hold `privilege` on `database` (`table` None: database-wide)?
    `fold`: names compare without case (lower_case_table_names 1 or 2)."""
    def same(a: str, b: str) -> bool:
        return a.lower() == b.lower() if fold else a == b

    def has(g: Grant) -> bool:
        return privilege in g.privileges or "ALL" in g.privileges

    for g in grants:
        if g.revoke and has(g) and g.table == "*" and g.database != "*" \
                and same(g.database, database):
            return False
    for g in grants:
        if g.revoke or not has(g):
            continue
        if g.database == "*":
            return True
        if g.table == "*" and _like(g.database, database, fold):
            return True
        if table is not None and g.table != "*" and same(g.database, database) \
                and same(g.table, table):
            return True
    return False


def account(current_user: str) -> str:
    """CURRENT_USER()'s `user@host` as a GRANT names it: 'user'@'host'."""
    user, _, host = current_user.rpartition("@")
    return f"'{_quote(user)}'@'{_quote(host)}'"


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


_ROLE = re.compile(r"`((?:[^`]|``)*)`@`((?:[^`]|``)*)`")


def parse_roles(text: str) -> list[tuple[str, str]]:
    """MySQL's CURRENT_ROLE(): "`r1`@`%`,`r2`@`%`", or NONE."""
    return [(m.group(1).replace("``", "`"), m.group(2).replace("``", "`"))
            for m in _ROLE.finditer(text or "")]
