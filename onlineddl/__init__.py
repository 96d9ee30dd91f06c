"""onlineddl: online schema changes for MySQL and MariaDB.

    from onlineddl import Dsn, MigrationConfig, migrate
    migrate(MigrationConfig(dsn=Dsn(host="db1"), database="app", table="users",
                            alter="ADD COLUMN note VARCHAR(64) NULL"))
"""

from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import OnlineDDLError
from onlineddl.migration import Migration, Result, migrate

__all__ = ["Dsn", "Migration", "MigrationConfig", "OnlineDDLError", "Result", "Tuning",
           "migrate"]
__version__ = "0.1.0"
