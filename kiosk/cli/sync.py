"""`kiosk sync status` and `kiosk sync drain`: the outbox, for staff and central IT.

Status reads a snapshot and works while the kiosk runs; drain needs the store to
itself (the running kiosk drains on its own; use the staff menu's "sync now").
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from kiosk.config.load import ConfigError


def _config(args: argparse.Namespace) -> dict:
    from kiosk.shell.launcher import load_site_config

    return load_site_config(args.config)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="seconds") if t else None


def cmd_status(args: argparse.Namespace) -> int:
    """Reads a snapshot: works beside the running kiosk, on a read-only mount, and says
    what to do when the store or its key cannot be used (exit 1 then)."""
    from kiosk.store.inspect import inspect_store

    config = _config(args)
    data = Path(config["kiosk"]["data_dir"]).expanduser()
    report = inspect_store(data)
    if report.problem == "no_store":
        print(f"no kiosk data in {data}", file=sys.stderr)
        return 1
    stats = report.stats
    out: dict = {"pending": None, "in_flight": None, "oldest_pending": None, "last_success": None,
                 "conflicts": None, "damaged": None}
    if stats is not None:
        out.update(pending=stats.pending, in_flight=stats.in_flight, oldest_pending=_iso(stats.oldest_created),
                   last_success=_iso(stats.last_success), conflicts=stats.conflicts, damaged=stats.damaged)
    out["problem"] = report.problem or None
    if report.problem:
        out["detail"], out["fix"] = report.detail, report.fix
    if report.damaged:
        out["damaged_rows"] = [{"id": i, "source": src, "reason": why, "found_at": when}
                               for i, src, why, when in report.damaged]
    from kiosk.release.status import release_status

    release = release_status()
    out["release"] = release.as_dict()
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            if k not in ("damaged_rows", "release"):
                print(f"{k:15} {v if v is not None else '-'}")
        rb = release.last_rollback
        print(f"{'version':15} {release.running}" + (f" (trial of {release.trial})" if release.trial else ""))
        print(f"{'last rollback':15} " + (f"{rb['version']} -> {rb['to']} at {rb['at']}: {rb['reason']}" if rb else "-"))
        for row in out.get("damaged_rows", []):
            print(f"damaged #{row['id']:<6} {row['source']:9} {row['reason']:12} found {row['found_at']}")
    serious = report.problem not in ("", "damaged_rows")
    return 1 if serious else 0


def cmd_drain(args: argparse.Namespace) -> int:
    from kiosk.shell.launcher import open_outbox_for_drain
    from kiosk.store.database import StoreBusy, StoreError
    from kiosk.sync.outbox_worker import OutboxWorker

    config = _config(args)
    try:
        store, outbox, catalogue = open_outbox_for_drain(config)
    except StoreBusy:
        print("the kiosk is running and drains its outbox itself; use the staff menu's "
              "'sync now', or stop the kiosk first", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"the outbox cannot be drained: {exc}", file=sys.stderr)
        return 1
    try:
        worker = OutboxWorker(outbox, catalogue, lambda: datetime.now().astimezone(), on_result=lambda r: None)
        report = worker.drain_once()
    finally:
        catalogue.close()
        store.close()
    print(f"sent and acknowledged: {report.acknowledged}, refused: {report.refused}, "
          f"to staff review: {report.conflicts}, still pending: {report.remaining}")
    if report.held:
        print(f"the library system takes no checkouts now ({report.error or 'ACS status'}); "
              "nothing was sent, the loans stay queued", file=sys.stderr)
        return 1
    if report.unavailable:
        print("the catalogue could not be reached; the rest stays queued", file=sys.stderr)
        return 1
    return 0


def add_sync_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sync", help="the loan outbox: status and drain")
    ssub = p.add_subparsers(dest="sync_command", required=True, metavar="ACTION")
    for name, func, text in (("status", cmd_status, "pending loans, oldest, last success, conflicts"),
                             ("drain", cmd_drain, "send every pending loan now")):
        c = ssub.add_parser(name, help=text)
        c.add_argument("--config", metavar="FILE")
        if name == "status":
            c.add_argument("--json", action="store_true")
        c.set_defaults(func=func)


__all__ = ["add_sync_commands", "ConfigError"]
