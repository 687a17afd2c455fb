# Frozen copy of the TinyDB store as it was before issue 13, kept only as the baseline
# of bench/bench_store.py (same durability: an fsync per write). Not part of the kiosk.
"""The kiosk's one local database: TinyDB over a storage that survives power cuts.

TinyDB's own JSONStorage rewrites the file in place, so a crash mid-write leaves a
half-written file that no longer parses and every queued loan in it is gone
(kiosk-platform.md §6). `AtomicJSONStorage` only ever swaps in a complete, fsynced
file with `os.replace`, so after any crash the DB is either the old or the new
version, never a mix. `Store` adds what the kiosk needs on top: one lock for the
UI thread and the outbox worker, all-or-nothing multi-table transactions, and the
fixed set of tables.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from tinydb import Query, TinyDB
from tinydb.storages import Storage

TABLES = ("outbox", "conflicts", "links", "settings", "audit")


class StoreError(Exception):
    """The local store cannot be used; the kiosk must stop lending, not carry on."""


class StoreBusy(StoreError):
    """Another process (or another open in this process) holds the store."""


class StoreCorrupt(StoreError):
    """The DB file does not parse. Never happens with our own writes; kept for staff."""


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in `directory` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicJSONStorage(Storage):
    """TinyDB storage: write temp file, fsync, os.replace over the DB, fsync the directory.

    Also holds an exclusive flock on a sibling lock file while open: TinyDB rewrites
    the whole file on every change, so two processes writing it would silently drop
    each other's loans. Leftover temp files from a crash are deleted on open (under
    the lock, so they cannot belong to a live writer). Files are created 0600.

    `batch()` defers writes and performs one atomic write at the end; an exception
    inside discards every change of the batch (see `Store.transaction`).

    While it holds the lock it keeps the parsed file in memory (write-through: a
    write that fails drops the copy), so reads cost no re-parse. Values read from a
    TinyDB table share nested dicts/lists with that copy: do not mutate them.
    """

    def __init__(self, path: str | os.PathLike[str], *, lock: bool = True, **kwargs: Any) -> None:
        super().__init__()
        self._path = Path(path)
        self._dir = self._path.parent
        self._kwargs = kwargs            # json.dumps options, e.g. ensure_ascii=False
        self._tmp_prefix = f".{self._path.name}."
        self._pending: dict[str, Any] | None = None
        self._cache: dict[str, Any] | None = None   # the file as last read or written
        self._cached = False
        self._batch_depth = 0
        self._batch_failed = False
        self._lock_fd: int | None = None
        if lock:
            self._lock_fd = self._acquire_lock()
        self._clean_temp_files()
        if self._path.exists():
            os.chmod(self._path, 0o600)

    # -- Storage interface ---------------------------------------------------

    def read(self) -> dict[str, Any] | None:
        if self._pending is not None:
            return self._pending
        if self._cached:
            return self._cache
        data = self._load()
        if self._lock_fd is not None:           # only we can change the file while we hold the lock
            self._cache, self._cached = data, True
        return data

    def write(self, data: dict[str, Any]) -> None:
        if self._batch_depth:
            self._pending = data
            return
        self._commit(data)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)         # closing the fd releases the flock
            self._lock_fd = None

    # -- batching ------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group writes into one atomic file replacement (nested batches join the outer one)."""
        self._batch_depth += 1
        ok = False
        try:
            yield
            ok = True
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                pending, self._pending = self._pending, None
                failed, self._batch_failed = self._batch_failed, False
                if not ok or failed:
                    self.forget_cache()          # TinyDB may have changed the cached dict in place
                    if ok:
                        raise StoreError("an operation inside the transaction failed; nothing was written")
                elif pending is not None:
                    self._commit(pending)

    # -- internals -----------------------------------------------------------

    def _load(self) -> dict[str, Any] | None:
        try:
            with open(self._path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreCorrupt(
                f"{self._path} does not parse ({len(raw)} bytes): {exc}; kept as is for staff"
            ) from exc
        if not isinstance(data, dict):
            raise StoreCorrupt(f"{self._path} does not hold a TinyDB document")
        return data

    def _commit(self, data: dict[str, Any]) -> None:
        try:
            self._write_file(data)
        except BaseException:
            self.forget_cache()                 # memory must never run ahead of the disk
            raise
        if self._lock_fd is not None:
            self._cache, self._cached = data, True

    def forget_cache(self) -> None:
        """Re-read the file next time. Call after a TinyDB operation raised: some change
        documents in place before failing. Inside a batch this also dooms the batch."""
        self._cache, self._cached = None, False
        if self._batch_depth:
            self._batch_failed = True

    def _write_file(self, data: dict[str, Any]) -> None:
        payload = json.dumps(data, **self._kwargs).encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix=self._tmp_prefix, suffix=".tmp", dir=self._dir)
        try:
            with os.fdopen(fd, "wb") as f:          # mkstemp creates it 0600
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_dir(self._dir)

    def _acquire_lock(self) -> int:
        lock_path = self._dir / f".{self._path.name}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreBusy(
                    f"{self._path} is open elsewhere (another kiosk process, or the store was "
                    "opened twice); two writers would lose each other's loans"
                ) from exc
            raise
        return fd

    def _clean_temp_files(self) -> None:
        for leftover in self._dir.glob(f"{self._tmp_prefix}*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


class LockedTable:
    """A TinyDB table whose every call holds the store lock (TinyDB is not thread-safe).

    A call that raises drops the storage's in-memory copy, so a half-applied TinyDB
    operation never shows up in later reads (or in the next write).
    """

    def __init__(self, table: Any, lock: threading.RLock, check_open: Callable[[], None],
                 on_error: Callable[[], None]) -> None:
        self._table = table
        self._lock = lock
        self._check_open = check_open
        self._on_error = on_error

    @property
    def name(self) -> str:
        return self._table.name

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self._table, attr)
        if not callable(target):
            return target

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self._check_open()
                try:
                    return target(*args, **kwargs)
                except BaseException:
                    self._on_error()
                    raise

        return locked

    def __len__(self) -> int:
        with self._lock:
            self._check_open()
            return len(self._table)

    def __iter__(self) -> Iterator[Any]:
        with self._lock:
            self._check_open()
            return iter(list(self._table))


class Store:
    """The opened kiosk DB: tables outbox, conflicts, links, settings, audit.

    Single calls on a table are atomic and thread-safe. Use `with store.transaction():`
    for anything that reads then writes, or touches two tables: it holds the lock and
    turns every write inside into one atomic file replacement (or none on error).
    """

    def __init__(self, path: Path, db: TinyDB, storage: AtomicJSONStorage) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._db = db
        self._storage = storage
        self._closed = False
        self._raw = {name: db.table(name) for name in TABLES}
        wrap = lambda name: LockedTable(  # noqa: E731
            self._raw[name], self.lock, self._check_open, self._after_error)
        self.outbox = wrap("outbox")
        self.conflicts = wrap("conflicts")
        self.links = wrap("links")
        self.settings = wrap("settings")
        self.audit = wrap("audit")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            self._check_open()
            try:
                with self._storage.batch():
                    yield
            except BaseException:
                self._after_error()
                raise

    def _after_error(self) -> None:
        # The storage copy and TinyDB's per-table query cache and next doc id may now
        # describe changes that never reached the disk.
        self._storage.forget_cache()
        for table in self._raw.values():
            table.clear_cache()
            table._next_id = None

    def get_setting(self, name: str, default: Any = None) -> Any:
        with self.lock:
            self._check_open()
            doc = self._raw["settings"].get(Query().name == name)
        return default if doc is None else doc["value"]

    def set_setting(self, name: str, value: Any) -> None:
        """`value` must be JSON-able and must not be personal data (settings are not sealed)."""
        with self.lock:
            self._check_open()
            try:
                self._raw["settings"].upsert({"name": name, "value": value}, Query().name == name)
            except BaseException:
                self._after_error()
                raise

    def close(self) -> None:
        with self.lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(path: str | os.PathLike[str], *, snapshot: bool = False) -> Store:
    """Open (or create) the kiosk DB at `path`; a directory we create is made 0700.

    `snapshot=True` reads without taking the writer's lock (for `kiosk sync status`
    while the kiosk runs): every write is an atomic rename, so a reader sees one whole
    version. Never write through a snapshot.
    """
    path = Path(path)
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)          # mkdir's mode is filtered by the umask
    db = TinyDB(path, storage=AtomicJSONStorage, ensure_ascii=False, lock=not snapshot)
    storage = db.storage
    assert isinstance(storage, AtomicJSONStorage)
    return Store(path, db, storage)
