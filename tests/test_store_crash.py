"""Crash safety: SIGKILL a writer at random moments; the store must always reopen whole.

The child appends loans to the real Outbox (acknowledges the oldest every third loan
and forces a WAL checkpoint every fifth) and prints a line only after each call has
returned. The parent kills it at a random moment, reopens the store and checks that
every loan reported committed is there (unless reported acknowledged), in order,
exactly once.

The negative control shows what a plain in-place JSON rewrite does instead: a file
cut short mid-write cannot be opened at all (the config layer's JSON file therefore
goes through AtomicJSONStorage, tested here too).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tinydb import TinyDB
from tinydb.storages import JSONStorage

from kiosk.store.database import StoreCorrupt, open_store
from kiosk.store.json_file import AtomicJSONStorage
from kiosk.store.outbox import Outbox
from kiosk.store.sealed import DeviceKey
from kiosk_testing.store import ManualClock

pytestmark = pytest.mark.slow

KILLS = 40
TIME_BUDGET = 18.0      # seconds for the whole kill loop

CHILD = r"""
import sys
from datetime import datetime, timezone
from kiosk.core.catalogue import LoanRequest, LoanResult
from kiosk.store.outbox import Outbox
from kiosk.store.sealed import DeviceKey
from kiosk.store.database import open_store

def say(word, txn):
    sys.stdout.write(f"{word} {txn}\n")
    sys.stdout.flush()

data, run = sys.argv[1], int(sys.argv[2])
clock = lambda: datetime.now(timezone.utc)
store = open_store(data + "/kiosk.db")
outbox = Outbox(store, DeviceKey.load_or_create(data + "/device.key"), clock)
print("ready", flush=True)
i = 0
while True:
    txn = f"r{run:02d}-{i:04d}"
    outbox.append(LoanRequest(txn, "P-SECRET", f"ITEM{i}", clock()))
    say("committed", txn)
    if i % 3 == 2:
        head = outbox.next_pending().loan
        say("acking", head.txn_id)
        outbox.acknowledge(head.txn_id, LoanResult(head.txn_id, True, head.item_id))
        say("acked", head.txn_id)
    if i % 5 == 4:
        say("checkpoint", "-")
        store.checkpoint()              # a kill may land mid-checkpoint
        say("checkpointed", "-")
    i += 1
"""


def test_sigkill_at_random_moments_never_loses_or_duplicates_a_loan(store_dir):
    DeviceKey.load_or_create(store_dir / "device.key")
    rng = random.Random(20250401)
    env = dict(os.environ)
    committed: list[str] = []        # in the order the child reported them
    acked: set[str] = set()
    in_progress: set[str] = set()    # per run, the append that may have landed unreported
    maybe_acked: set[str] = set()    # per run, the acknowledge that may have landed unreported
    kills = wal_replays = mid_checkpoint = 0
    deadline = time.monotonic() + TIME_BUDGET

    while kills < KILLS and time.monotonic() < deadline:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(store_dir), str(kills)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        first = child.stdout.readline()
        if first != "ready\n":
            child.kill()
            pytest.fail(f"child did not start: {first!r} {child.communicate()[1]}")
        time.sleep(rng.uniform(0.002, 0.06))
        child.send_signal(signal.SIGKILL)
        # Read through the same file object as readline(): it may already hold later lines.
        out, err = child.stdout.read(), child.stderr.read()
        child.wait(timeout=10)
        child.stdout.close()
        child.stderr.close()
        assert child.returncode == -signal.SIGKILL, err
        kills += 1

        acking: str | None = None
        checkpointing = False
        run_commits = 0
        for line in out.split("\n")[:-1]:       # a line cut by the kill was not reported
            word, txn = line.split()
            if word == "committed":
                committed.append(txn)
                run_commits += 1
            elif word == "acking":
                acking = txn
            elif word == "acked":
                acked.add(txn)
                acking = None
            elif word == "checkpoint":
                checkpointing = True
            elif word == "checkpointed":
                checkpointing = False
        in_progress.add(f"r{kills - 1:02d}-{run_commits:04d}")
        if acking:
            maybe_acked.add(acking)

        wal = store_dir / "kiosk.db-wal"
        if wal.exists() and wal.stat().st_size > 32:
            wal_replays += 1           # the reopen below must recover from the WAL
        mid_checkpoint += checkpointing

        store = open_store(store_dir / "kiosk.db")          # must open, every time
        try:
            pending = [loan.txn_id for loan in Outbox(store, DeviceKey.load_or_create(store_dir / "device.key"),
                                                      ManualClock()).pending()]
        finally:
            store.close()

        assert len(pending) == len(set(pending)), "a loan is duplicated"
        lost = [t for t in committed if t not in acked and t not in pending and t not in maybe_acked]
        assert not lost, f"after kill {kills}: committed loans lost: {lost}"
        assert not acked & set(pending), "an acknowledged loan came back"
        reported = set(committed)
        unreported = [t for t in pending if t not in reported]
        assert set(unreported) <= in_progress, f"loans appeared that were never appended: {unreported}"
        held = set(pending)
        assert [t for t in pending if t in reported] == [t for t in committed if t in held], "queue order changed"

    assert kills >= 30, f"only {kills} kills fit in the time budget"
    assert len(committed) > kills, "the child hardly wrote anything before being killed"
    assert wal_replays >= 1, "no kill left a WAL to recover, so the test proved little"
    print(f"\n{kills} kills, {len(committed)} loans committed, {len(acked)} acknowledged, "
          f"{wal_replays} reopens recovered from the WAL, {mid_checkpoint} kills during a checkpoint")


def _tinydb_file(path: Path, storage) -> None:
    db = TinyDB(path, storage=storage)
    for i in range(200):
        db.table("outbox").insert({"txn_id": f"t{i}", "sealed": "x" * 64})
    db.close()


def _cut_short(src: Path, dst: Path) -> None:
    """What a power cut during an in-place rewrite leaves: the first part of the new bytes."""
    shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        f.truncate(os.path.getsize(dst) // 2)


def test_negative_control_plain_jsonstorage_cut_mid_write_cannot_be_opened(tmp_path):
    _tinydb_file(tmp_path / "plain.json", JSONStorage)
    _cut_short(tmp_path / "plain.json", tmp_path / "cut.json")
    db = TinyDB(tmp_path / "cut.json", storage=JSONStorage)
    with pytest.raises(json.JSONDecodeError):
        db.table("outbox").all()           # every queued loan is unreachable
    db.close()


def test_atomic_storage_only_ever_leaves_cut_bytes_in_a_temp_file(store_dir):
    """With os.replace the torn bytes can only be in the temp file, which is dropped on open."""
    path = store_dir / "layer.json"
    _tinydb_file(path, AtomicJSONStorage)
    _cut_short(path, store_dir / ".layer.json.crash1.tmp")
    db = TinyDB(path, storage=AtomicJSONStorage)
    assert len(db.table("outbox")) == 200
    db.close()
    assert not (store_dir / ".layer.json.crash1.tmp").exists()

    # The same torn bytes as the file itself are refused loudly, not read as empty.
    _cut_short(path, store_dir / "torn.json")
    torn = AtomicJSONStorage(store_dir / "torn.json")
    with pytest.raises(StoreCorrupt):
        torn.read()
    torn.close()


def test_a_wal_cut_mid_commit_opens_at_the_last_whole_commit(store_dir):
    """A power cut during a commit leaves a WAL whose last frame is torn: SQLite's frame
    checksums drop it, and every loan committed before it is still there."""
    key = DeviceKey.load_or_create(store_dir / "device.key")
    path = store_dir / "kiosk.db"
    store = open_store(path)
    outbox = Outbox(store, key, ManualClock())
    from kiosk_testing.store import make_loan
    for i in range(10):
        outbox.append(make_loan(i))
    wal = store_dir / "kiosk.db-wal"
    whole = wal.read_bytes()
    outbox.append(make_loan(10))
    full = wal.read_bytes()
    # What the disk holds if the power went half way through the 11th commit; copy it
    # aside as a store of its own (the open connection would otherwise clean up).
    crashed = store_dir / "crashed"
    crashed.mkdir()
    import shutil as _sh
    _sh.copy(path, crashed / "kiosk.db")
    (crashed / "kiosk.db-wal").write_bytes(full[: len(whole) + (len(full) - len(whole)) // 2])
    store.close()
    with open_store(crashed / "kiosk.db") as reopened:
        assert [l.txn_id for l in Outbox(reopened, key, ManualClock()).pending()] == \
            [make_loan(i).txn_id for i in range(10)]
