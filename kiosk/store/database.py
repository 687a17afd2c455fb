"""The kiosk's one local database: SQLite in WAL mode, fsynced at every commit.

A loan shown as lent must survive a power cut, so every commit is durable on return
(`synchronous=FULL`) and a crash leaves the last committed state, never a mix (the
WAL). One process writes (an flock on a sibling lock file: a second kiosk process
fails loudly with StoreBusy); `kiosk sync status` reads a snapshot beside it. The
schema carries a version (`PRAGMA user_version`) and grows by numbered migrations.

Only modules of `kiosk.store` use `query`/`write`; everything else sees the narrow
APIs of outbox, link cache, audit and settings, and the StoreError family.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

from kiosk.store.errors import KeyUnavailable, StoreBusy, StoreCorrupt, StoreError, StoreReadOnly
from kiosk.store.json_file import AtomicJSONStorage, fsync_dir, lock_exclusively, lock_path_for

__all__ = ["AtomicJSONStorage", "KeyUnavailable", "Store", "StoreBusy", "StoreCorrupt", "StoreError",
           "StoreReadOnly", "fsync_dir", "open_scratch_store", "open_store", "SCHEMA_VERSION"]

BUSY_TIMEOUT_MS = 5000
# Small pages: a loan's commit rewrites whole pages in the WAL (and again at checkpoint),
# so 1 KiB pages write a quarter of the bytes of SQLite's 4 KiB default, on an SD card.
PAGE_SIZE = 1024
SQLITE_HEADER = b"SQLite format 3\x00"

# Migration n brings a store from user_version n to n + 1. Append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE outbox (
        seq      INTEGER PRIMARY KEY,           -- max + 1: no sqlite_sequence page to write per loan
        txn_id   TEXT NOT NULL UNIQUE,
        state    TEXT NOT NULL,
        created  TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        sealed   TEXT NOT NULL
    );
    CREATE TABLE conflicts (
        txn_id   TEXT PRIMARY KEY,
        recorded TEXT NOT NULL,
        sealed   TEXT NOT NULL
    );
    CREATE TABLE damaged (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        source   TEXT NOT NULL,
        txn_id   TEXT,
        found_at TEXT NOT NULL,
        reason   TEXT NOT NULL,
        raw      TEXT NOT NULL
    );
    CREATE TABLE links (
        k       TEXT PRIMARY KEY,
        stored  TEXT NOT NULL,
        sealed  TEXT NOT NULL
    );
    CREATE INDEX links_by_age ON links (stored);
    CREATE TABLE settings (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE audit (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        at     TEXT NOT NULL,
        actor  TEXT NOT NULL,
        action TEXT NOT NULL,
        fields TEXT NOT NULL
    );
    CREATE TABLE refusals (
        action  TEXT NOT NULL,
        cause   TEXT NOT NULL,
        window  TEXT NOT NULL,
        count   INTEGER NOT NULL,
        last_at TEXT NOT NULL,
        PRIMARY KEY (action, cause, window)
    );
    """,
    # 2: the last few anonymous refusals in detail, in a ring of their own (diagnosis);
    # the counts in `refusals` stay the record.
    """
    CREATE TABLE refusal_log (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        after_seq INTEGER NOT NULL,
        at        TEXT NOT NULL,
        action    TEXT NOT NULL,
        fields    TEXT NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
SEALED_TABLES = ("outbox", "conflicts", "links", "damaged")


def _translate(exc: sqlite3.Error, path: Path) -> StoreError:
    """An sqlite3 error as the StoreError the shell acts on (never leaks sqlite3 upward)."""
    text = str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    if "readonly" in text or "read-only" in text or code in (8, 264, 520, 776, 1032):
        return StoreReadOnly(f"{path} cannot be written ({text}): check that the data directory "
                             "is mounted read-write and owned by the kiosk user")
    if "malformed" in text or "not a database" in text or code in (11, 26):
        return StoreCorrupt(f"{path} is damaged ({text}); kept as is for recovery")
    if "locked" in text or "busy" in text:
        return StoreBusy(f"{path} is busy ({text})")
    if "full" in text:
        return StoreError(f"{path}: the disk is full ({text})")
    return StoreError(f"{path}: {text}")


class Store:
    """The opened kiosk DB. Single calls are atomic, durable and thread-safe; use
    `with store.transaction():` for anything that reads then writes, or touches two
    tables: one commit (one fsync) for all of it, or none on error."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int | None, snapshot: bool) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.snapshot = snapshot
        self._conn = conn
        self._lock_fd = lock_fd
        self._depth = 0
        self._closed = False

    # -- for kiosk.store modules only ------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            self._check_open()
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from exc

    def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one change; outside a transaction it is its own durable commit. Rows changed."""
        with self.transaction():
            try:
                return self._conn.execute(sql, params).rowcount
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from exc

    def write_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.transaction():
            try:
                self._conn.executemany(sql, rows)
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from exc

    # -- public ------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside land in one commit; nested transactions join the outer one."""
        with self.lock:
            self._check_open()
            if self.snapshot:
                raise StoreReadOnly(f"{self.path} is open as a read-only snapshot")
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from exc
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            self._depth = 0
            try:
                self._commit()
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise _translate(exc, self.path) from exc

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def get_setting(self, name: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM settings WHERE name = ?", (name,))
        return default if not rows else json.loads(rows[0][0])

    def set_setting(self, name: str, value: Any) -> None:
        """`value` must be JSON-able and must not be personal data (settings are not sealed)."""
        self.write("INSERT INTO settings (name, value) VALUES (?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                   (name, json.dumps(value, ensure_ascii=False)))

    def holds_sealed_data(self) -> bool:
        """True when any row was sealed with the device key (a new key would orphan it)."""
        return any(self.query(f"SELECT 1 FROM {table} LIMIT 1") for table in SEALED_TABLES)

    def schema_version(self) -> int:
        return int(self.query("PRAGMA user_version")[0][0])

    def checkpoint(self) -> None:
        """Copy the WAL into the main file now (SQLite also does it every 1000 pages)."""
        self.query("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self.lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)        # closing the fd releases the flock
                self._lock_fd = None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(path: str | os.PathLike[str], *, snapshot: bool = False) -> Store:
    """Open (or create) the kiosk DB at `path`; a directory we create is made 0700.

    A file that is not a whole SQLite database of ours raises StoreCorrupt and is
    left byte for byte as it was. `snapshot=True` opens read-only without the writer's
    lock (for `kiosk sync status` beside the running kiosk, or on a read-only mount).
    """
    path = Path(path)
    if snapshot:
        return _open_snapshot(path)
    directory = path.parent
    if not directory.exists():
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)          # mkdir's mode is filtered by the umask
        except OSError as exc:
            raise StoreReadOnly(f"cannot create the data directory {directory}: {exc.strerror}") from exc
    _check_header(path)
    lock_fd = _acquire_lock(path)
    try:
        _check_untouched(path)
    except BaseException:
        os.close(lock_fd)
        raise
    try:
        conn = _connect(path)
        store = Store(path, conn, lock_fd, snapshot=False)
    except BaseException:
        os.close(lock_fd)
        raise
    try:
        _check_integrity(store)
        _migrate(store)
    except BaseException:
        store.close()
        raise
    return store


def open_scratch_store() -> Store:
    """An in-memory store with the kiosk's schema, for a kiosk whose real store cannot be
    used: staff can still sign in and read status while it stays out of service. Nothing
    written here survives the process, so it must never journal a loan."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    store = Store(Path(":memory:"), conn, None, snapshot=False)
    _migrate(store)
    return store


def _connect(path: Path) -> sqlite3.Connection:
    if not path.exists() or path.stat().st_size == 0:
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as exc:
            raise StoreReadOnly(f"cannot create {path}: {exc.strerror}") from exc
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)               # SQLite gives -wal and -shm the same mode
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")      # only takes on a new, empty file
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreReadOnly(f"{path} cannot be put in WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA secure_delete = ON")     # a purged loan leaves no bytes behind
    except sqlite3.Error as exc:
        raise _translate(exc, path) from exc
    return conn


def _open_snapshot(path: Path) -> Store:
    if not path.exists():
        raise StoreError(f"no kiosk database at {path}")
    _check_header(path)
    _check_untouched(path)
    uri = path.resolve().as_uri()
    last: sqlite3.Error | None = None
    # ?mode=ro needs the -shm file writable (or creatable); on a read-only mount only
    # immutable=1 reads, and then nothing else may be writing (nothing can, there).
    for query in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(uri + query, uri=True, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            last = exc
            continue
        store = Store(path, conn, None, snapshot=True)
        try:
            _check_integrity(store)
            if store.schema_version() != SCHEMA_VERSION:
                raise StoreError(f"{path} has schema version {store.schema_version()}, "
                                 f"this kiosk reads {SCHEMA_VERSION}")
        except BaseException:
            store.close()
            raise
        return store
    assert last is not None
    raise _translate(last, path) from last


def _check_header(path: Path) -> None:
    """A non-empty file that is not SQLite is not ours to open (SQLite would refuse it
    anyway, but only at the first query, with a less useful message)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
    if head and head != SQLITE_HEADER:
        raise StoreCorrupt(f"{path} is not an SQLite database ({len(head)}+ bytes of something else); "
                           "kept as is for recovery")


def _check_untouched(path: Path) -> None:
    """After a clean close there is no WAL: check the file read-only and immutable first,
    so a damaged one is refused before SQLite creates -wal/-shm beside it (it stays byte
    for byte as found). With a WAL present (a crash) the main file alone may be mid-
    checkpoint, so only the normal open, which replays the WAL, can judge it."""
    wal = path.with_name(path.name + "-wal")
    if not path.exists() or path.stat().st_size == 0 or (wal.exists() and wal.stat().st_size > 0):
        return
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        raise _translate(exc, path) from exc
    try:
        result = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.Error as exc:
        raise StoreCorrupt(f"{path} is damaged ({exc}); kept as is for recovery") from exc
    finally:
        conn.close()
    if result != ["ok"]:
        raise StoreCorrupt(f"{path} failed its integrity check ({result[0]}); kept as is for recovery")


def _check_integrity(store: Store) -> None:
    try:
        result = store.query("PRAGMA quick_check")
    except StoreError as exc:
        raise StoreCorrupt(f"{store.path} is damaged ({exc}); kept as is for recovery") from exc
    if [r[0] for r in result] != ["ok"]:
        raise StoreCorrupt(f"{store.path} failed its integrity check ({result[0][0]}); kept as is for recovery")


def _migrate(store: Store) -> None:
    version = store.schema_version()
    if version > SCHEMA_VERSION:
        raise StoreError(f"{store.path} was written by a newer kiosk (schema {version}, this one knows "
                         f"{SCHEMA_VERSION}); install that version again, do not downgrade")
    for n in range(version, SCHEMA_VERSION):
        with store.transaction():
            for statement in MIGRATIONS[n].split(";"):
                if statement.strip():
                    store.write(statement)
            store.write(f"PRAGMA user_version = {n + 1}")


def _acquire_lock(path: Path) -> int:
    lock_path = lock_path_for(path)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise StoreReadOnly(f"the data directory {path.parent} is read-only ({exc.strerror}); "
                                "the kiosk cannot record loans there") from exc
        raise StoreError(f"cannot open {lock_path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    lock_exclusively(fd, path)
    return fd
