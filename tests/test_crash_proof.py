"""Proof: no loan confirmed on screen is ever lost or doubled, whatever the kill moment.

A real kiosk process (tests/crash_kiosk.py: launcher, controller, crash-safe
store, encrypted outbox, worker, SIP2 client) checks out books against the pysip2
ACS on loopback. The test SIGKILLs it at random moments, many times, restarting it
over the same data directory each time. Afterwards the ACS must hold every loan the
kiosk showed as lent, exactly once (a re-sent checkout the ACS already had counts as
a renewal, never a second loan), and the outbox must be empty.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kiosk_testing.sip2_server import (
    INSTITUTION,
    PATRON_OK,
    SIP_PASSWORD,
    SIP_USER,
    FakeItem,
    FakeLibrary,
    run_pysip2_acs,
)

REPO = Path(__file__).resolve().parent.parent
ITEMS = [f"14{n:08d}" for n in range(1, 151)]
KILLS = 25


class Child:
    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("crash_kiosk.py")), *args],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def started(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while "STARTED" not in self.lines:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"kiosk did not start: {self.lines[-3:]}")
            time.sleep(0.01)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._reader.join(5)

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc


@pytest.mark.slow
def test_sigkill_during_checkouts_never_loses_or_doubles_a_loan(tmp_path):
    library = FakeLibrary.seeded()
    library.items.update({i: FakeItem(i, f"本 {i[-2:]}") for i in ITEMS})
    library.patrons[PATRON_OK].limit = 1000
    secret = tmp_path / "sip2-password"
    secret.write_text(SIP_PASSWORD)
    secret.chmod(0o600)
    data = tmp_path / "kiosk"
    rng = random.Random(20261124)
    confirmed: set[str] = set()
    with run_pysip2_acs(library) as acs:
        base = ["--data", str(data), "--host", acs.host, "--port", str(acs.port), "--user", SIP_USER,
                "--password-file", str(secret), "--institution", INSTITUTION,
                "--patron", PATRON_OK, "--patron-password", "1234"]
        kills = 0
        while kills < KILLS:
            todo = [i for i in ITEMS if i not in confirmed]
            if not todo:
                break
            child = Child(base + ["--items", ",".join(todo)])
            child.started()
            time.sleep(rng.uniform(0.0, 0.7))      # anywhere in sign-in, scanning, sending or draining
            child.kill()
            kills += 1
            confirmed |= {line.split()[1] for line in child.lines if line.startswith("CONFIRMED")}
        # A last run without a kill: finish the rest and drain what earlier runs left.
        todo = [i for i in ITEMS if i not in confirmed]
        child = Child(base + ["--items", ",".join(todo)])
        assert child.wait(120) == 0, child.lines[-5:]
        assert "DONE" in child.lines
        confirmed |= {line.split()[1] for line in child.lines if line.startswith("CONFIRMED")}

    assert kills >= 10, "the kiosk finished too fast for the kills to mean anything"
    print(f"kills={kills} checkouts sent={len(library.checkouts)} "
          f"replays={sum(c['outcome'] == 'renewal' for c in library.checkouts)}")
    assert confirmed == set(ITEMS)
    for item in ITEMS:
        assert library.loans[item][0] == PATRON_OK, item
        new_loans = [c for c in library.checkouts if c["item"] == item and c["outcome"] == "loan"]
        assert len(new_loans) == 1, (item, new_loans)
    # Nothing of the loans is left on the kiosk once the ACS has them.
    leftovers = subprocess.run(
        [sys.executable, "-c", "import sys; from kiosk.store.database import open_store; "
         "from kiosk.store.outbox import Outbox; from kiosk.store.sealed import DeviceKey; "
         "s = open_store(sys.argv[1] + '/kiosk.db'); "
         "print(Outbox(s, DeviceKey.load(sys.argv[1] + '/device.key'), None).count()); s.close()", str(data)],
        cwd=REPO, capture_output=True, text=True, check=True)
    assert leftovers.stdout.strip() == "0"
