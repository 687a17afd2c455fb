"""Proof: no loan confirmed on screen is ever lost or doubled, whatever the kill moment.

A real kiosk process (tests/crash_kiosk.py: launcher, controller, SQLite journal,
encrypted outbox, worker, SIP2 client) checks out books against the pysip2 ACS on
loopback. The test SIGKILLs it at random moments, hundreds of times, restarting it
over the same data directory each time; a thread in the kiosk checkpoints the WAL
every few milliseconds, so kills also land inside checkpoints. Every restart must
open the journal (a kiosk that finds it damaged says so and the test fails).
Afterwards the ACS must hold every loan the kiosk showed as lent, exactly once (a
re-sent checkout the ACS already had counts as a renewal, never a second loan), and
the outbox must be empty.

The kiosks are forked from a fork server that has imported everything once
(tests/crash_kiosk.py --fork-server): 500 kills fit in about three minutes. Each run is
killed after a random number (0-4) of loans shown as lent plus a random 0-40 ms, so the
kills spread over every phase whatever the machine's speed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
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
CHILD = Path(__file__).with_name("crash_kiosk.py")
ITEMS = [f"14{n:08d}" for n in range(1, 2201)]
KILLS = int(os.environ.get("KIOSK_CRASH_KILLS", "500"))
RETURN_KILLS = int(os.environ.get("KIOSK_CRASH_RETURN_KILLS", "120"))
PER_RUN = 40                     # items handed to each run: more than it gets through before its kill


class ForkServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(CHILD), "--fork-server", "--data", "-", "--host", "-",
                                      "--port", "0", "--user", "-", "--password-file", "-", "--institution", "-",
                                      "--patron", "-", "--patron-password", "-"],
                                     cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)

    def run(self, out: Path, args: list[str]) -> int:
        self.proc.stdin.write(" ".join(["RUN", str(out), *args]) + "\n")
        self.proc.stdin.flush()
        word, pid = self.proc.stdout.readline().split()
        assert word == "PID"
        return int(pid)

    def exit_code(self, pid: int) -> int:
        word, got, rc = self.proc.stdout.readline().split()
        assert (word, int(got)) == ("EXIT", pid)
        return int(rc)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)
        self.proc.stdout.close()


def lines_of(path: Path) -> list[str]:
    """What a run said before it died; a line cut by the kill was not said."""
    if not path.exists():
        return []
    text = path.read_text()
    return text.split("\n")[:-1]


def wait_for(path: Path, pid: int, confirmed: int, timeout: float = 20.0) -> None:
    """Until the run has started and shown `confirmed` loans as lent (or has ended)."""
    deadline = time.monotonic() + timeout
    while True:
        said = lines_of(path)
        if "STARTED" in said and sum(line.startswith("CONFIRMED") for line in said) >= confirmed:
            return
        if any(line.startswith(("DONE", "STORE_PROBLEM")) for line in said):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"kiosk {pid} stalled: {said[-3:]}")
        time.sleep(0.001)


@dataclass
class KillRun:
    """What `kill_at_random` saw: loans (or returns) shown as done, kills that landed, how many
    of them inside a WAL checkpoint, and how many items were done before the last, unkilled run."""
    confirmed: set[str] = field(default_factory=set)
    kills: int = 0
    in_checkpoint: int = 0
    before_last_run: int = 0
    kill_phase_s: float = 0.0


def sip2_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "sip2-password"
    secret.write_text(SIP_PASSWORD)
    secret.chmod(0o600)
    return secret


def kill_at_random(base: list[str], items: list[str], kills: int, rng: random.Random, outs: Path) -> KillRun:
    """Run the kiosk over `items` (PER_RUN a run) and SIGKILL each run at a random moment until
    `kills` kills have landed, then finish (and drain what the killed runs left) in one last run
    that is not killed, as its own process. Every run must open its journal and end by the kill
    or by finishing."""
    run = KillRun()
    began = time.monotonic()
    server = ForkServer()
    try:
        while run.kills < kills:
            todo = [i for i in items if i not in run.confirmed]
            if not todo:
                break
            out = outs / f"run-{run.kills:04d}"
            pid = server.run(out, base + ["--items", ",".join(todo[:PER_RUN])])
            # The kill comes at a random moment after a random number of items shown as done:
            # in sign-in, scanning, journaling, sending, settling or checkpointing, at any speed.
            wait_for(out, pid, rng.randrange(0, 5))
            time.sleep(rng.uniform(0.0, 0.04))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:          # it had finished its items (reaped by the server)
                pass
            rc = server.exit_code(pid)
            said = lines_of(out)
            assert not any(line.startswith("STORE_PROBLEM") for line in said), said[-3:]
            assert rc in (-signal.SIGKILL, 0), (rc, said[-3:])
            run.kills += rc == -signal.SIGKILL
            marks = [line for line in said if line.startswith("CHECKPOINT")]
            run.in_checkpoint += bool(marks) and marks[-1] == "CHECKPOINT+"
            run.confirmed |= {line.split()[1] for line in said if line.startswith("CONFIRMED")}
    finally:
        server.close()
    run.kill_phase_s = time.monotonic() - began
    todo = [i for i in items if i not in run.confirmed]
    run.before_last_run = len(items) - len(todo)
    final = subprocess.run([sys.executable, str(CHILD), *base, "--items", ",".join(todo)],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stdout[-500:]
    assert "DONE" in final.stdout
    run.confirmed |= {line.split()[1] for line in final.stdout.splitlines() if line.startswith("CONFIRMED")}
    return run


def assert_outbox_empty(data: Path) -> None:
    """Nothing of the loans or returns is left on the kiosk once the ACS has them (read by a
    fresh process, as the next start would)."""
    leftovers = subprocess.run(
        [sys.executable, "-c", "import sys; from kiosk.store.database import open_store; "
         "from kiosk.store.outbox import Outbox; from kiosk.store.sealed import DeviceKey; "
         "s = open_store(sys.argv[1] + '/kiosk.db'); "
         "print(Outbox(s, DeviceKey.load(sys.argv[1] + '/device.key'), None).count()); s.close()", str(data)],
        cwd=REPO, capture_output=True, text=True, check=True)
    assert leftovers.stdout.strip() == "0"


@pytest.mark.slow
def test_sigkill_during_checkouts_and_checkpoints_never_loses_or_doubles_a_loan(tmp_path):
    library = FakeLibrary.seeded()
    library.items.update({i: FakeItem(i, f"本 {i[-2:]}") for i in ITEMS})
    library.patrons[PATRON_OK].limit = 9999
    secret = sip2_secret(tmp_path)
    data = tmp_path / "kiosk"
    outs = tmp_path / "runs"
    outs.mkdir()
    with run_pysip2_acs(library) as acs:
        base = ["--data", str(data), "--host", acs.host, "--port", str(acs.port), "--user", SIP_USER,
                "--password-file", str(secret), "--institution", INSTITUTION,
                "--patron", PATRON_OK, "--patron-password", "1234", "--think", "0",
                "--checkpoint-every", "0.01"]
        run = kill_at_random(base, ITEMS, KILLS, random.Random(20261202), outs)

    checkouts = len(library.checkouts)
    print(f"\nkills={run.kills} (of them {run.in_checkpoint} inside a WAL checkpoint) checkouts sent={checkouts} "
          f"replays={sum(c['outcome'] == 'renewal' for c in library.checkouts)} "
          f"confirmed before the last run={run.before_last_run} kill phase={run.kill_phase_s:.0f}s")
    assert run.kills >= KILLS
    assert run.in_checkpoint >= KILLS // 20, "too few kills landed inside a checkpoint to mean anything"
    assert checkouts >= 2000
    assert run.confirmed == set(ITEMS)
    for item in ITEMS:
        assert library.loans[item][0] == PATRON_OK, item
        new_loans = [c for c in library.checkouts if c["item"] == item and c["outcome"] == "loan"]
        assert len(new_loans) == 1, (item, new_loans)
    assert_outbox_empty(data)


@pytest.mark.slow
def test_sigkill_during_returns_never_loses_or_doubles_a_return(tmp_path):
    """A return station killed at random moments: every book shown as returned reaches the
    ACS as exactly one effective checkin (a replay of one it already has is "not checked
    out", never a second return), and the outbox ends empty."""
    items = [f"15{n:08d}" for n in range(1, 601)]
    library = FakeLibrary.seeded()
    library.items.update({i: FakeItem(i, f"返却本 {i[-3:]}") for i in items})
    library.loans.update({i: (PATRON_OK, "20990101    235900") for i in items})
    secret = sip2_secret(tmp_path)
    data = tmp_path / "kiosk"
    outs = tmp_path / "runs"
    outs.mkdir()
    with run_pysip2_acs(library) as acs:
        base = ["--data", str(data), "--host", acs.host, "--port", str(acs.port), "--user", SIP_USER,
                "--password-file", str(secret), "--institution", INSTITUTION, "--patron", PATRON_OK,
                "--patron-password", "1234", "--think", "0", "--checkpoint-every", "0.01", "--returns"]
        run = kill_at_random(base, items, RETURN_KILLS, random.Random(20261203), outs)

    print(f"\nkills={run.kills} checkins sent={len(library.checkins)} "
          f"replays={sum(c['outcome'] == 'not_on_loan' for c in library.checkins)}")
    assert run.kills >= RETURN_KILLS
    assert run.confirmed == set(items)
    for item in items:
        assert item not in library.loans, item
        returned = [c for c in library.checkins if c["item"] == item and c["outcome"] == "returned"]
        assert len(returned) == 1, (item, returned)
    assert_outbox_empty(data)
