"""A headless kiosk process for crash tests: `python -m tests.crash_kiosk ...`.

It is the real app minus the window: launcher-built services (SQLite journal,
encrypted outbox, outbox worker, SIP2 backend) and the real controller and session.
A library-card patron signs in and scans the given items one by one; every row the
screen shows as lent is printed as `CONFIRMED <item>` (the parent kills this process
at random moments and checks the catalogue against these lines). With `--returns` it
is a return station instead, and every row shown as returned is `CONFIRMED <item>`.

`--checkpoint-every S` also checkpoints the WAL every S seconds from another thread,
marking `CHECKPOINT+`/`CHECKPOINT-` around it, so kills land inside checkpoints too.

`--fork-server` imports everything once, then for each `RUN <out-file> <args...>` line
on stdin forks a fresh kiosk process (`PID <n>` on stdout) and reports `EXIT <n> <rc>`
when it is gone: hundreds of kills fit in a CI budget, each one a real process with
its own store connection, killed by a real SIGKILL.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import threading
import time
from typing import Callable

from kiosk.config.load import load_config
from kiosk.core.events import Barcode, Press
from kiosk.shell.launcher import build_controller, build_services
from kiosk_testing.manual_loop import ManualLoop


_SAY = threading.Lock()


def say_stdout(line: str) -> None:
    with _SAY:                                  # whole lines, whichever thread speaks
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class PrintingView:
    def __init__(self, say: Callable[[str], None] = say_stdout) -> None:
        self.screen = None
        self.model: dict = {}
        self.confirmed: set[str] = set()
        self.say = say

    def show(self, screen: str, model: dict) -> None:
        self.screen, self.model = screen, model
        for row in model.get("rows", []):
            if row["state"] in ("ok", "returned", "hold_shelf") and row["item_id"] not in self.confirmed:
                self.confirmed.add(row["item_id"])
                self.say(f"CONFIRMED {row['item_id']}")

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


def parser() -> argparse.ArgumentParser:
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
    ap.add_argument("--checkpoint-every", type=float, default=0.0)
    ap.add_argument("--fork-server", action="store_true")
    ap.add_argument("--returns", action="store_true", help="a return station: the items are returned")
    return ap


def main() -> int:
    args = parser().parse_args()
    if args.fork_server:
        return fork_server()
    return kiosk_run(args, say_stdout)


def fork_server() -> int:
    """Fork one kiosk per RUN line; this process starts no thread, so a fork is clean."""
    import kiosk.shell.launcher  # noqa: F401 - import once, before any fork
    import kiosk.sync.outbox_worker  # noqa: F401
    import kiosk.sync.sip2_backend  # noqa: F401

    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != "RUN":
            continue
        out_path, argv = words[1], shlex.split(line)[2:]
        pid = os.fork()
        if pid == 0:
            fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            rc = 1
            try:
                rc = kiosk_run(parser().parse_args(argv), lambda text: os.write(fd, (text + "\n").encode()))
            finally:
                os._exit(rc)
        print(f"PID {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"EXIT {pid} {os.waitstatus_to_exitcode(status)}", flush=True)
    return 0


def kiosk_run(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    layer = {
        "kiosk": {"data_dir": args.data, "id": "crash-test", "mode": "return" if args.returns else "kiosk"},
        "card": {"backend": "none"},
        "catalogue": {"backend": "sip2", "timeout": 2, "sip2": {
            "host": args.host, "port": args.port, "tls": False, "login_user": args.user,
            "password_file": args.password_file, "institution": args.institution, "location": "MAIN"}},
        "loans": {"item_pattern": r"^1\d{7,13}$", "patron_pattern": r"^2\d{7,13}$"},
        "logging": {"format": "text", "level": "WARNING"},
    }
    config = load_config(None, [("crash-test", layer)])
    services = build_services(config)
    if services.store_problem:                  # the journal must open after every kill
        say(f"STORE_PROBLEM {services.store_problem}")
        return 3
    if args.checkpoint_every:
        def checkpoints() -> None:
            from kiosk.store.errors import StoreError

            while True:
                time.sleep(args.checkpoint_every)
                say("CHECKPOINT+")
                try:
                    services.store.checkpoint()
                except StoreError:              # closed at the end of the run
                    return
                say("CHECKPOINT-")

        threading.Thread(target=checkpoints, daemon=True).start()
    view = PrintingView(say)
    loop = ManualLoop()
    controller = build_controller(services, view, loop)
    controller.start()
    say("STARTED")
    items = [i for i in args.items.split(",") if i]

    def scan_each() -> None:
        """Each book scanned, a patron's pause apart, its row answered before the next."""
        for item in items:
            time.sleep(args.think)
            controller.post(Barcode(item))
            run(loop, lambda: any(r["item_id"] == item and r["state"] != "pending"
                                  for r in view.model.get("rows", [])))

    if items and args.returns:
        run(loop, lambda: view.screen == "returns")
        scan_each()
        controller.post(Press("finish"))
        run(loop, lambda: view.model.get("summary") is True)
        controller.post(Press("done"))
        run(loop, lambda: view.screen == "returns" and not view.model.get("rows"))
    elif items:
        controller.post(Barcode(args.patron))
        run(loop, lambda: view.screen == "pin")
        for d in args.patron_password:
            controller.post(Press("digit", d))
        controller.post(Press("ok"))
        run(loop, lambda: view.screen == "scanning")
        scan_each()
        controller.post(Press("finish"))
        run(loop, lambda: view.screen == "summary")
    # Whatever an earlier, killed run left in the outbox is drained before we say DONE.
    run(loop, lambda: services.outbox.stats().pending == 0)
    say("DONE")
    controller.stop()
    services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
