"""Walls between the engine and what it depends on, checked on the source text.

Each outside library is imported by one module only (ruff's TID251 bans it elsewhere;
this test also catches a wall module importing another wall's library, which a ruff
per-file ignore would let through), and only flavor.py knows which flavor it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

from onlineddl.db import binlog_stream_error
from onlineddl.errors import ReplicationError, StreamReconnected

PACKAGE = Path(__file__).resolve().parents[2] / "onlineddl"

# library -> the one module, or package ending in "/" (path under onlineddl/), allowed
# to import it
WALLS = {
    "pymysql": "db.py",
    "sqlglot": "statement/",
    "prometheus_client": "metrics.py",
    "pymysqlreplication": "binlog/reader.py",
}
FLAVOR_CLASSES = {"MySQL", "MariaDB"}
FLAVOR_MODULE = "flavor.py"


def modules() -> list[tuple[str, ast.Module]]:
    return [(path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path)))
            for path in sorted(PACKAGE.rglob("*.py"))]


def imported(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, top-level package) of every import, also those inside functions."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def wall_breaches(found: list[tuple[str, ast.Module]]) -> list[str]:
    return [f"onlineddl/{name}:{line}: imports {package} (only {WALLS[package]} may)"
            for name, tree in found for line, package in imported(tree)
            if package in WALLS and not inside_wall(name, WALLS[package])]


def inside_wall(name: str, wall: str) -> bool:
    return name.startswith(wall) if wall.endswith("/") else name == wall


def names_a_flavor_class(node: ast.AST) -> bool:
    return any(getattr(n, "id", None) in FLAVOR_CLASSES or
               getattr(n, "attr", None) in FLAVOR_CLASSES for n in ast.walk(node))


def compares_a_flavor_name(node: ast.Compare) -> bool:
    """`flavor.name == "mariadb"` (or any `.name` compared with "mariadb"/"mysql")."""
    sides = [node.left, *node.comparators]
    names = any(isinstance(s, ast.Attribute) and s.attr == "name" for s in sides)
    flavors = any(isinstance(s, ast.Constant) and s.value in ("mariadb", "mysql")
                  for s in sides)
    return names and flavors


def flavor_branches(found: list[tuple[str, ast.Module]]) -> list[str]:
    """isinstance(x, MariaDB/MySQL), `type(x) is MariaDB`, `.is_mariadb` and a flavor
    name compared outside
    flavor.py: the decision belongs in a flavor method."""
    out: list[str] = []
    for name, tree in found:
        if name == FLAVOR_MODULE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id == "isinstance" and len(node.args) == 2 and \
                    names_a_flavor_class(node.args[1]):
                out.append(f"onlineddl/{name}:{node.lineno}: isinstance on a flavor class")
            elif isinstance(node, ast.Compare) and \
                    any(names_a_flavor_class(c) for c in node.comparators):
                out.append(f"onlineddl/{name}:{node.lineno}: compares with a flavor class")
            elif isinstance(node, ast.Attribute) and node.attr == "is_mariadb":
                out.append(f"onlineddl/{name}:{node.lineno}: reads .is_mariadb")
            elif isinstance(node, ast.Compare) and compares_a_flavor_name(node):
                out.append(f"onlineddl/{name}:{node.lineno}: compares a flavor's name")
    return out


def test_each_library_is_imported_only_by_its_wall_module() -> None:
    breaches = wall_breaches(modules())
    assert not breaches, "imports outside their wall module:\n" + "\n".join(breaches)


def test_only_flavor_py_branches_on_the_flavor() -> None:
    branches = flavor_branches(modules())
    assert not branches, ("flavor branching outside flavor.py (add a method or property "
                          "to the flavor classes instead):\n" + "\n".join(branches))


def test_the_scans_find_what_they_look_for() -> None:
    """The checks themselves, on a module that breaks every rule."""
    bad = ast.parse("import pymysql.err\nfrom sqlglot import exp\n"
                    "def f(flavor):\n"
                    "    import prometheus_client\n"
                    "    a = isinstance(flavor, MariaDB)\n"
                    "    b = isinstance(flavor, (flavor_mod.MySQL, int))\n"
                    "    c = type(flavor) is MariaDB\n"
                    "    return flavor.is_mariadb\n")
    assert len(wall_breaches([("cutover.py", bad)])) == 3
    assert wall_breaches([("db.py", ast.parse("import pymysql"))]) == []
    assert len(flavor_branches([("cutover.py", bad)])) == 4
    assert flavor_branches([("flavor.py", bad)]) == []


def test_the_binlog_librarys_driver_errors_become_ours() -> None:
    """binlog.py catches whatever the library raises; db.py says what it means."""
    import pymysql.err  # tests are clients: they may build the driver's errors

    lost = binlog_stream_error(pymysql.err.OperationalError(2013, "Lost connection"))
    assert isinstance(lost, StreamReconnected)
    killed = binlog_stream_error(pymysql.err.OperationalError(1927, "Connection was killed"))
    assert isinstance(killed, StreamReconnected)
    refused = binlog_stream_error(pymysql.err.OperationalError(1236, "purged binlog"))
    assert isinstance(refused, ReplicationError) and not isinstance(refused, StreamReconnected)
    decode = binlog_stream_error(ValueError("bad packet"))
    assert type(decode) is ReplicationError and "ValueError: bad packet" in decode.message
    assert "--resume" in decode.hint
