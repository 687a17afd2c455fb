"""The loan journal on SQLite against the TinyDB store it replaced, in one run.

Run: .venv/bin/python bench/bench_store.py [--dir DIR] [--appends N] [--loans N]
The baseline is the TinyDB store as it was before issue 13 (bench/baseline/, frozen):
the same durability, an fsync per write. Both sides seal every loan with AES-GCM.
Measures, each in this run on this disk (DIR must be a real disk, not tmpfs):
- append + commit latency (p50, p99) at 100, 1,000 and 10,000 pending loans;
- bytes written to disk per loan over a full lend-then-acknowledge cycle, from
  /proc/self/io write_bytes (WAL, checkpoints and the baseline's whole-file rewrites
  included), at 100 pending;
- kiosk CPU per drained loan: OutboxWorker.drain_once against pysip2 on loopback,
  CPU time of the draining thread only (the ACS runs in another thread).
Targets (issue 13): p99 <= 5 ms at 1,000 and 10,000 and p99(10,000) <= 1.5 x p99(100);
<= 32 KiB per loan; <= 1 ms CPU per drained loan.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).with_name("baseline")))

from kiosk.core.catalogue import LoanRequest, LoanResult  # noqa: E402
from kiosk.store.database import open_store  # noqa: E402
from kiosk.store.outbox import Outbox  # noqa: E402
from kiosk.store.sealed import DeviceKey  # noqa: E402
from kiosk.sync.outbox_worker import OutboxWorker  # noqa: E402

import tinydb_outbox  # noqa: E402
import tinydb_store  # noqa: E402

CLOCK = lambda: datetime.now().astimezone()  # noqa: E731
SIZES = (100, 1000, 10000)


def new_sqlite(d: Path, capacity: int) -> tuple[Any, Any]:
    store = open_store(d / "kiosk.db")
    return store, Outbox(store, DeviceKey.load_or_create(d / "device.key"), CLOCK, capacity=capacity)


def new_tinydb(d: Path, capacity: int) -> tuple[Any, Any]:
    store = tinydb_store.open_store(d / "kiosk.json")
    return store, tinydb_outbox.Outbox(store, DeviceKey.load_or_create(d / "device.key"), CLOCK, capacity=capacity)


def loan(tag: str, i: int) -> LoanRequest:
    return LoanRequest(f"{tag}{i:06d}", "20000001", f"14{i:08d}", CLOCK())


def prefill(store: Any, outbox: Any, pending: int) -> None:
    """`pending` sealed loans in one commit (the baseline's append scans the table, so
    filling it loan by loan would take minutes; its rows are the same either way)."""
    if isinstance(outbox, Outbox):
        with store.transaction():
            for i in range(pending):
                outbox.append(loan("p", i))
        return
    docs = []
    for i in range(pending):
        lent, created = loan("p", i), CLOCK().isoformat()
        docs.append({"txn_id": lent.txn_id, "seq": i + 1, "state": "queued", "created": created, "attempts": 0,
                     "sealed": outbox._key.seal(tinydb_outbox._loan_to_json(lent),  # noqa: SLF001
                                                tinydb_outbox._loan_aad(lent.txn_id, i + 1, created))})
    store.outbox.insert_multiple(docs)


def append_latency(make: Callable, root: Path, pending: int, appends: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir=root) as d:
        store, outbox = make(Path(d), pending + appends + 10)
        prefill(store, outbox, pending)
        times = []
        for i in range(appends):
            t = time.perf_counter()
            outbox.append(loan("a", i))
            times.append(time.perf_counter() - t)
        store.close()
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def bytes_per_loan(make: Callable, root: Path, loans: int, checkpoint: bool) -> float:
    """Lend (append), send (mark in flight), acknowledge (settle): each its own commit, as
    at the kiosk, with 100 loans already pending."""
    with tempfile.TemporaryDirectory(dir=root) as d:
        store, outbox = make(Path(d), loans + 200)
        prefill(store, outbox, 100)
        if checkpoint:
            store.checkpoint()
        before = write_bytes()
        for i in range(loans):
            lent = loan("c", i)
            outbox.append(lent)
            outbox.mark_sent_many([lent.txn_id])
            outbox.settle_many([(lent.txn_id, LoanResult(lent.txn_id, True, lent.item_id), False)])
        if checkpoint:
            store.checkpoint()                  # what the cycle left in the WAL reaches the main file too
        store.close()
        return (write_bytes() - before) / loans


def drain_cpu(make: Callable, root: Path, loans: int) -> float:
    from kiosk.sync.sip2_backend import Sip2Catalogue
    from kiosk.sync.sip2_client import Sip2Client
    from kiosk_testing.sip2_server import INSTITUTION, PATRON_OK, FakeItem, FakeLibrary, run_pysip2_acs, sip2_config

    items = [f"15{i:08d}" for i in range(loans)]
    library = FakeLibrary.seeded()
    library.patrons[PATRON_OK].limit = 9999
    library.items.update({i: FakeItem(i, "本") for i in items})
    with tempfile.TemporaryDirectory(dir=root) as d, run_pysip2_acs(library) as acs:
        store, outbox = make(Path(d), loans + 10)
        for n, item in enumerate(items):
            outbox.append(LoanRequest(f"t{n}", PATRON_OK, item, CLOCK()))
        catalogue = Sip2Catalogue(Sip2Client(sip2_config(acs.host, acs.port, timeout=5.0)), institution=INSTITUTION)
        worker = OutboxWorker(outbox, catalogue, CLOCK, on_result=lambda r: None)
        cpu = time.thread_time()
        report = worker.drain_once()
        cpu = time.thread_time() - cpu
        assert report.acknowledged == loans, report
        catalogue.close()
        store.close()
    return cpu / loans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=str(Path(__file__).resolve().parent.parent),
                    help="where the stores are written (a real disk: /proc/self/io must see it)")
    ap.add_argument("--appends", type=int, default=300)
    ap.add_argument("--loans", type=int, default=300)
    args = ap.parse_args()
    root = Path(args.dir)
    rows: list[tuple[str, float, float, str]] = []
    lat = {}
    for pending in SIZES:
        new = append_latency(new_sqlite, root, pending, args.appends)
        old = append_latency(new_tinydb, root, pending, args.appends if pending < 10000 else max(20, args.appends // 5))
        lat[pending] = new
        rows.append((f"append+commit p50 ms, {pending} pending", new[0] * 1e3, old[0] * 1e3, ""))
        rows.append((f"append+commit p99 ms, {pending} pending", new[1] * 1e3, old[1] * 1e3,
                     "<= 5" if pending >= 1000 else ""))
    new_b = bytes_per_loan(new_sqlite, root, args.loans, checkpoint=True)
    old_b = bytes_per_loan(new_tinydb, root, args.loans, checkpoint=False)
    rows.append(("KiB written per lent+acked loan", new_b / 1024, old_b / 1024, "<= 32"))
    new_c = drain_cpu(new_sqlite, root, args.loans)
    old_c = drain_cpu(new_tinydb, root, args.loans)
    rows.append(("CPU ms per drained loan (SIP2)", new_c * 1e3, old_c * 1e3, "<= 1"))

    print(f"{'measure':40}{'SQLite':>10}{'TinyDB':>10}{'ratio':>8}  target")
    print("-" * 78)
    for name, new_v, old_v, target in rows:
        ratio = new_v / old_v if old_v else float("nan")
        print(f"{name:40}{new_v:10.2f}{old_v:10.2f}{ratio:8.2f}  {target}")
    flat = lat[10000][1] / lat[100][1]
    print(f"\nflatness: SQLite p99 at 10,000 / p99 at 100 = {flat:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
