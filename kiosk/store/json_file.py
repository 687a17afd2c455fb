"""One JSON document on disk that survives power cuts: the signed config layer and the
demo's local catalogue (a TinyDB storage by duck typing; this module imports no TinyDB).

A plain in-place rewrite leaves a half-written file that no longer parses after a
crash. `AtomicJSONStorage` only ever swaps in a complete, fsynced file with
`os.replace`, so after any crash the file is either the old or the new version.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from kiosk.store.errors import StoreBusy, StoreCorrupt, StoreError


def lock_path_for(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


def lock_exclusively(fd: int, path: Path) -> None:
    """The one-writer lock on `path`'s open lock file (the JSON files and the SQLite journal alike).
    When another process or handle holds it: StoreBusy, with `fd` closed."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StoreBusy(
                f"{path} is open elsewhere (another kiosk process, or the store was "
                "opened twice); two writers would lose each other's loans"
            ) from exc
        raise


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in `directory` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicJSONStorage:
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
        fd = os.open(lock_path_for(self._path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        lock_exclusively(fd, self._path)
        return fd

    def _clean_temp_files(self) -> None:
        for leftover in self._dir.glob(f"{self._tmp_prefix}*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
