"""What crash safety and sealing cost per write, against TinyDB's own JSONStorage.

Run: /tmp/venv/bin/python bench/bench_store.py [--writes N]
Prints one table; every ratio is measured in this run, on this disk, against the
plain JSONStorage baseline at the same DB size (absolute times vary by machine).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from tinydb import TinyDB
from tinydb.storages import JSONStorage

from kiosk.core.catalogue import LoanRequest  # noqa: E402
from kiosk.store.database import AtomicJSONStorage, open_store  # noqa: E402
from kiosk.store.outbox import Outbox  # noqa: E402
from kiosk.store.sealed import DeviceKey  # noqa: E402

DOC = {"txn_id": "t", "seq": 1, "state": "queued", "created": "2025-04-01T09:00:00+00:00",
       "attempts": 0, "sealed": "x" * 200}


def per_write_tinydb(storage, base: int, writes: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        db = TinyDB(Path(d) / "db.json", storage=storage)
        table = db.table("outbox")
        table.insert_multiple([DOC] * base)
        times = []
        for _ in range(writes):
            t = time.perf_counter()
            table.insert(DOC)
            times.append(time.perf_counter() - t)
        db.close()
    return statistics.median(times)


def per_write_outbox(base: int, writes: int) -> float:
    clock = lambda: datetime.now(timezone.utc)  # noqa: E731
    with tempfile.TemporaryDirectory() as d:
        store = open_store(Path(d) / "kiosk.json")
        outbox = Outbox(store, DeviceKey.load_or_create(Path(d) / "device.key"), clock)
        with store.transaction():
            for i in range(base):
                outbox.append(LoanRequest(f"b{i}", "P0001", f"I{i}", clock()))
        times = []
        for i in range(writes):
            t = time.perf_counter()
            outbox.append(LoanRequest(f"w{i}", "P0001", f"I{i}", clock()))
            times.append(time.perf_counter() - t)
        store.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=50)
    args = parser.parse_args()
    print(f"{'docs in DB':>10} | {'JSONStorage ms':>14} | {'Atomic / JSON':>13} | {'Outbox.append / JSON':>20}")
    print("-" * 67)
    for base in (0, 500, 2000):
        plain = per_write_tinydb(JSONStorage, base, args.writes)
        atomic = per_write_tinydb(AtomicJSONStorage, base, args.writes)
        sealed = per_write_outbox(base, args.writes)
        print(f"{base:>10} | {plain * 1000:>14.2f} | {atomic / plain:>13.2f} | {sealed / plain:>20.2f}")


if __name__ == "__main__":
    main()
