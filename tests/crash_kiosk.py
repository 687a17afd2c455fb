"""A headless kiosk process for crash tests: `python -m tests.crash_kiosk ...`.

It is the real app minus the window: launcher-built services (crash-safe store,
encrypted outbox, outbox worker, SIP2 backend) and the real controller and session.
A library-card patron signs in and scans the given items one by one; every row the
screen shows as lent is printed as `CONFIRMED <item>` (the parent kills this process
at random moments and checks the catalogue against these lines).
"""

from __future__ import annotations

import argparse
import sys
import time

from kiosk.config.load import load_config
from kiosk.core.events import Barcode, Press
from kiosk.shell.launcher import build_controller, build_services
from kiosk_testing.manual_loop import ManualLoop


class PrintingView:
    def __init__(self) -> None:
        self.screen = None
        self.model: dict = {}
        self.confirmed: set[str] = set()

    def show(self, screen: str, model: dict) -> None:
        self.screen, self.model = screen, model
        for row in model.get("rows", []):
            if row["state"] == "ok" and row["item_id"] not in self.confirmed:
                self.confirmed.add(row["item_id"])
                print(f"CONFIRMED {row['item_id']}", flush=True)

    def lights(self, pattern: str) -> None:
        pass

    def cue(self, sound: str) -> None:
        pass


def run(loop: ManualLoop, until, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last_tick = 0.0
    while not until():
        loop.run_pending()
        now = time.monotonic()
        if now - last_tick >= 0.25:
            loop.tick()
            last_tick = now
        if now > deadline:
            raise SystemExit("timed out")
        time.sleep(0.002)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--institution", required=True)
    ap.add_argument("--patron", required=True)
    ap.add_argument("--patron-password", required=True)
    ap.add_argument("--items", default="")
    ap.add_argument("--think", type=float, default=0.04, help="seconds between scans, as a person")
    args = ap.parse_args()
    layer = {
        "kiosk": {"data_dir": args.data, "id": "crash-test"},
        "card": {"backend": "none"},
        "catalogue": {"backend": "sip2", "timeout": 2, "sip2": {
            "host": args.host, "port": args.port, "tls": False, "login_user": args.user,
            "password_file": args.password_file, "institution": args.institution, "location": "MAIN"}},
        "loans": {"item_pattern": r"^1\d{7,13}$", "patron_pattern": r"^2\d{7,13}$"},
        "logging": {"format": "text", "level": "WARNING"},
    }
    config = load_config(None, [("crash-test", layer)])
    services = build_services(config)
    view = PrintingView()
    loop = ManualLoop()
    controller = build_controller(services, view, loop)
    controller.start()
    print("STARTED", flush=True)
    items = [i for i in args.items.split(",") if i]
    if items:
        controller.post(Barcode(args.patron))
        run(loop, lambda: view.screen == "pin")
        for d in args.patron_password:
            controller.post(Press("digit", d))
        controller.post(Press("ok"))
        run(loop, lambda: view.screen == "scanning")
        for item in items:
            time.sleep(args.think)
            controller.post(Barcode(item))
            run(loop, lambda: any(r["item_id"] == item and r["state"] != "pending"
                                  for r in view.model.get("rows", [])))
        controller.post(Press("finish"))
        run(loop, lambda: view.screen == "summary")
    # Whatever an earlier, killed run left in the outbox is drained before we say DONE.
    run(loop, lambda: services.outbox.stats().pending == 0)
    print("DONE", flush=True)
    controller.stop()
    services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
