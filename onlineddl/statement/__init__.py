"""SQL text onlineddl reads, and the only package that imports sqlglot:

    alter.py       the operator's --alter: the clauses to splice and what they change
    binlog_sql.py  statements read from the binlog: does one change the table?
    tokens.py      sqlglot's MySQL tokenizer, reduced to what both readers need
"""

from onlineddl.statement.alter import ParsedAlter, parse_alter
from onlineddl.statement.binlog_sql import creates_temporary_table, statement_changes_table

__all__ = ["ParsedAlter", "creates_temporary_table", "parse_alter", "statement_changes_table"]
