"""One runner per table: a GET_LOCK held on one dedicated connection for the whole run.

The lock lives on a session, so it must be a pinned connection of its own (through a
pooled or shared one, whoever gets the connection next holds the lock too, and it no
longer keeps a second runner out). If that connection is lost, so is the lock: the
run must stop before cutover because it no longer owns the table.

The lock must also end when the tool does. A frozen or cut-off tool host leaves its
connection open, and the server would keep the lock until its wait_timeout (8 hours by
default), refusing every resume meanwhile. So the lock's connection tells the server to
drop it after IDLE_LIMIT seconds of silence, and a keepalive thread speaks every
KEEPALIVE seconds while the process lives.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable

from onlineddl.config import Dsn
from onlineddl.db import Session
from onlineddl.errors import Aborted, LockHeld, OnlineDDLError

log = logging.getLogger(__name__)

IDLE_LIMIT = 60      # seconds of silence after which the server drops the lock
KEEPALIVE = 5.0      # seconds between the keepalive's pings


def lock_name(database: str, table: str) -> str:
    """`onlineddl.<db>.<table>`, hashed when longer than the server's 64-character limit."""
    name = f"onlineddl.{database}.{table}"
    if len(name) <= 64:
        return name
    digest = hashlib.sha1(f"{database}.{table}".encode()).hexdigest()
    return f"onlineddl.{digest}"


class RunnerLock:
    def __init__(self, dsn: Dsn, database: str, table: str) -> None:
        self.dsn = dsn
        self.database = database
        self.table = table
        self.name = lock_name(database, table)
        self.session: Session | None = None
        self._use = threading.Lock()      # the session is shared with the keepalive
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None

    def acquire(self, wait_seconds: float,
                describe_holder: Callable[[], str] | None = None) -> None:
        """Take the lock, waiting at most `wait_seconds`; refuse with the holder named."""
        self.session = Session(self.dsn, name="runner-lock", idle_limit=IDLE_LIMIT,
                               read_timeout=wait_seconds + 30)
        got = self.session.scalar("SELECT GET_LOCK(%s, %s)", (self.name, int(wait_seconds)))
        if got == 1:
            log.info("holding runner lock %r", self.name)
            self._stop.clear()
            self._keepalive = threading.Thread(target=self._keep_alive, daemon=True,
                                               name="runner-lock-keepalive")
            self._keepalive.start()
            return
        holder = self.holder()
        self.release()
        extra = describe_holder() if describe_holder else ""
        raise LockHeld(
            f"another onlineddl run holds {self.database}.{self.table}: {holder}{extra}",
            hint="wait for it to finish, watch it with `onlineddl status`, or pass "
                 "--wait-for-lock SECONDS to queue behind it")

    def _keep_alive(self) -> None:
        """Ping the lock's connection so the server's idle limit only ever ends a dead
        tool's lock. A failed ping is left to check(), which stops the run."""
        while not self._stop.wait(KEEPALIVE):
            with self._use:
                if self.session is None:
                    return
                try:
                    self.session.ping()
                except OnlineDDLError:
                    return

    def holder(self) -> str:
        assert self.session is not None
        conn_id = self.session.scalar("SELECT IS_USED_LOCK(%s)", (self.name,))
        if conn_id is None:
            return "the holder just released it"
        row = self.session.query_one(
            "SELECT HOST, TIME, COALESCE(INFO, '') FROM information_schema.PROCESSLIST "
            "WHERE ID = %s", (conn_id,))
        if row is None:
            return f"connection {conn_id}"
        return f"connection {conn_id} from {row[0]}, holding it for {row[1]}s"

    def check(self) -> None:
        """Raise Aborted if the lock connection is gone: we no longer own the table."""
        if self.session is None:
            raise Aborted("the runner lock was never taken")
        try:
            with self._use:
                mine = self.session.scalar("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()",
                                           (self.name,))
        except OnlineDDLError as err:
            raise Aborted(
                f"lost the runner lock connection ({err.message}); stopping before cutover "
                "because this run no longer owns the table",
                hint="run the same command again with --resume") from err
        if mine != 1:
            raise Aborted("the runner lock is no longer held by this run",
                          hint="run the same command again with --resume")

    def release(self) -> None:
        self._stop.set()
        with self._use:
            if self.session is None:
                return
            try:
                self.session.scalar("SELECT RELEASE_LOCK(%s)", (self.name,))
            except OnlineDDLError:
                pass  # the connection is gone, and the lock with it
            self.session.close()
            self.session = None
