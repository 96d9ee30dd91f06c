"""The binlog reader, one noun: what the rest of the engine imports from it.

    reader.py    the reader choice (open_reader) and the library's general decoder
    wire.py      the fast wire reader: keys straight off the dump connection's socket
    items.py     what a reader hands out (Keys, Commit, SchemaChange) and the
                 transaction bookkeeping both readers share
    tablemap.py  a table's shape and its binlog table-map layout
    rowkeys.py   generated parsers for the key columns of row images

Outside this package, import from `onlineddl.binlog` only.
"""

from onlineddl.binlog.items import (
    GONE,
    MOVED,
    UPSERT,
    Commit,
    Item,
    Keys,
    SchemaChange,
    ddl_names_table,
)
from onlineddl.binlog.reader import BinlogReader, first_statement, open_reader
from onlineddl.binlog.tablemap import TableShape
from onlineddl.errors import StreamReconnected

__all__ = ["GONE", "MOVED", "UPSERT", "BinlogReader", "Commit", "Item", "Keys",
           "SchemaChange", "StreamReconnected", "TableShape", "ddl_names_table",
           "first_statement", "open_reader"]
