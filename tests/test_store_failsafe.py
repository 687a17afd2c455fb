"""The store fails safe: each way it can break, on real files, through the real kiosk.

Missing or different device key, a damaged row, a journal write that fails, an
unreadable database, a read-only data directory, restarts between wrong staff PINs.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from kiosk.core.catalogue import LoanRequest
from kiosk.core.events import Barcode, Press, Reset, StaffOpen
from kiosk.core.staff_pins import hash_pin
from kiosk.shell.launcher import build_controller, build_services, demo_config, with_outbox_check
from kiosk.store.database import open_store
from kiosk.store.outbox import Outbox
from kiosk.store.sealed import DeviceKey
from kiosk.sync.outbox_worker import OutboxWorker
from kiosk_testing.manual_loop import ManualLoop, RecordingView
from kiosk_testing.store import ScriptedCatalogue, make_loan, sqlite_rows, sqlite_write

REPO = Path(__file__).resolve().parent.parent
STAFF_PIN = "2468"


def kiosk_config(tmp_path: Path, demo_pki, **loans) -> dict:
    data = tmp_path / "kiosk-data"
    if not (data / "demo-pki").exists():
        shutil.copytree(demo_pki.directory, data / "demo-pki")
    config = demo_config(str(data))
    config["catalogue"]["local"]["path"] = str(tmp_path / "ils.json")
    config["staff"].update({"accounts": [{"id": "s01", "badge": "S00001",
                                          "pin_hash": hash_pin(STAFF_PIN.encode(), log2_n=10)}],
                            "max_failures": 3})
    config["loans"].update(loans)
    return config


class Kiosk:
    def __init__(self, config: dict) -> None:
        self.services = build_services(config, demo=True)
        self.view, self.loop = RecordingView(), ManualLoop()
        self.controller = build_controller(self.services, self.view, self.loop)
        self.controller.start()
        self.loop.run_pending()

    def post(self, event) -> None:
        self.controller.post(event)
        self.loop.run_pending()

    def pin(self, digits: str) -> None:
        for d in digits:
            self.post(Press("digit", d))
        self.post(Press("ok"))

    def staff_sign_in(self) -> None:
        self.post(StaffOpen())
        self.pin(STAFF_PIN)

    def staff_status(self) -> dict:
        self.post(Press("status"))
        self.loop.pump_until(lambda: bool(self.view.model.get("status")))
        return self.view.model["status"]

    def close(self) -> None:
        self.controller.stop()
        self.services.close()


def data_files(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(data.iterdir()) if p.is_file() and p.name.startswith("kiosk.db")}


def queue_loans(config: dict, n: int) -> list[str]:
    services = build_services(config)
    now = datetime.now().astimezone()
    for i in range(n):
        services.outbox.append(LoanRequest(f"t{i}", "20000001", f"1000000{i + 1}", now))
    services.close()
    return [f"t{i}" for i in range(n)]


# -- the device key ------------------------------------------------------------------------------

@pytest.mark.parametrize("what", ["missing", "different"])
def test_a_lost_or_replaced_key_with_sealed_loans_puts_the_kiosk_out_of_service(tmp_path, demo_pki, what):
    config = kiosk_config(tmp_path, demo_pki)
    data = Path(config["kiosk"]["data_dir"])
    queue_loans(config, 3)
    original = (data / "device.key").read_bytes()
    (data / "device.key").unlink()
    if what == "different":
        DeviceKey.load_or_create(data / "device.key")
    before = data_files(data)

    kiosk = Kiosk(config)
    try:
        assert kiosk.view.screen == "out_of_service"
        assert kiosk.services.store_problem == f"device_key_{'missing' if what == 'missing' else 'mismatch'}"
        assert (data / "device.key").exists() is (what == "different")     # no new key was made
        kiosk.post(Barcode("20000001"))                                      # nobody can borrow
        assert kiosk.view.screen == "out_of_service"
        kiosk.staff_sign_in()
        assert kiosk.view.screen == "staff_menu"
        assert kiosk.staff_status()["store_problem"] == kiosk.services.store_problem
    finally:
        kiosk.close()
    assert data_files(data) == before                                        # the sealed loans untouched

    site = write_site(tmp_path, config)
    status = run_kiosk("sync", "status", "--config", str(site), "--json")
    assert status.returncode == 1
    got = json.loads(status.stdout)
    assert got["problem"] == kiosk.services.store_problem and "restore" in got["fix"]
    doctor = run_kiosk("doctor", "--config", str(site), "--json")
    store_check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "store")
    assert store_check["status"] == "fail" and "device.key" in store_check["fix"]

    (data / "device.key").unlink(missing_ok=True)               # staff restore the backup
    (data / "device.key").write_bytes(original)
    (data / "device.key").chmod(0o600)
    kiosk = Kiosk(config)
    try:
        assert kiosk.services.store_problem == "" and kiosk.view.screen == "idle"
        kiosk.loop.pump_until(lambda: kiosk.services.outbox.stats().pending == 0)
        assert kiosk.services.outbox.damaged() == []            # every sealed loan opened and drained
        assert kiosk.services.catalogue.loans_of("20000001")
    finally:
        kiosk.close()


def test_a_new_key_is_made_only_for_a_store_without_sealed_data(tmp_path, demo_pki):
    config = kiosk_config(tmp_path, demo_pki)
    data = Path(config["kiosk"]["data_dir"])
    build_services(config).close()
    (data / "device.key").unlink()                              # nothing sealed yet: a new key is fine
    services = build_services(config)
    assert services.store_problem == "" and (data / "device.key").exists()
    services.close()


# -- a damaged row ---------------------------------------------------------------------------------

def test_one_flipped_bit_moves_that_loan_aside_and_the_rest_drains(store_dir, store_key, store_clock):
    store = open_store(store_dir / "kiosk.db")
    outbox = Outbox(store, store_key, store_clock)
    for i in range(5):
        outbox.append(make_loan(i))
    [row] = [r for r in sqlite_rows(store.path, "outbox") if r["txn_id"] == "txn-0002"]
    sealed = bytearray(row["sealed"].encode())
    sealed[30] ^= 0x01                                          # one bit, inside the ciphertext
    sqlite_write(store.path, "UPDATE outbox SET sealed = ? WHERE txn_id = 'txn-0002'", (sealed.decode(),))

    catalogue = ScriptedCatalogue()
    report = OutboxWorker(outbox, catalogue, store_clock, on_result=lambda r: None).drain_once()
    assert sorted(catalogue.calls) == ["txn-0000", "txn-0001", "txn-0003", "txn-0004"]
    assert report.acknowledged == 4 and outbox.stats().pending == 0
    [damaged] = outbox.damaged()
    assert (damaged.source, damaged.txn_id, damaged.reason) == ("outbox", "txn-0002", "seal_broken")
    [kept] = sqlite_rows(store.path, "damaged")
    assert sealed.decode() in kept["raw"]                       # kept as found, still sealed

    doc = with_outbox_check({"checks": {"catalogue": True}}, outbox.stats().damaged, "")
    assert doc["checks"] == {"catalogue": True, "outbox": False} and doc["outbox_damaged"] == 1
    store.close()


def test_damaged_rows_reach_staff_review_and_sync_status(tmp_path, demo_pki):
    config = kiosk_config(tmp_path, demo_pki)
    data = Path(config["kiosk"]["data_dir"])
    queue_loans(config, 2)
    sqlite_write(data / "kiosk.db", "UPDATE outbox SET sealed = 'AAAA' || substr(sealed, 5) WHERE txn_id = 't1'")
    site = write_site(tmp_path, config)

    kiosk = Kiosk(config)
    try:
        kiosk.loop.pump_until(lambda: kiosk.services.outbox.stats().pending == 0)
        assert kiosk.services.catalogue.loans_of("20000001") == ["10000001"]
        kiosk.staff_sign_in()
        assert kiosk.staff_status()["damaged"] == 1
        review = kiosk.services.staff_backend.load("conflicts")
        assert [(r["refusal"], r["item_id"], r["patron_id"]) for r in review] == [("damaged_row", None, None)]
        status = run_kiosk("sync", "status", "--config", str(site), "--json")   # beside the running kiosk
        got = json.loads(status.stdout)
        assert status.returncode == 0 and got["damaged"] == 1 and got["problem"] == "damaged_rows"
        assert got["damaged_rows"][0]["reason"] == "seal_broken"
        kiosk.services.staff_backend.resolve_conflict(review[0]["id"])         # settled at the counter
        assert kiosk.services.outbox.damaged() == []
    finally:
        kiosk.close()


# -- a journal write that fails ----------------------------------------------------------------------

def sign_in_patron(kiosk: Kiosk) -> None:
    kiosk.post(Barcode("20000001"))
    kiosk.loop.pump_until(lambda: kiosk.view.screen != "idle")
    assert kiosk.view.screen == "pin", (kiosk.view.screen, kiosk.view.model)
    kiosk.pin("1234")
    kiosk.loop.pump_until(lambda: kiosk.view.screen not in ("pin", "authenticating"))
    assert kiosk.view.screen == "scanning", (kiosk.view.screen, kiosk.view.model)


def sign_in_card(kiosk: Kiosk) -> None:
    """A My Number card patron; offline, the link cache resolves the card."""
    kiosk.services.demo.insert_card("registered-1")
    kiosk.loop.pump_until(lambda: kiosk.view.screen == "pin")
    kiosk.pin("1234")
    kiosk.loop.pump_until(lambda: kiosk.view.screen not in ("pin", "authenticating"))
    assert kiosk.view.screen == "take_card", (kiosk.view.screen, kiosk.view.model)
    kiosk.services.demo.remove_card()
    kiosk.loop.pump_until(lambda: kiosk.view.screen == "scanning")


def end_session(kiosk: Kiosk) -> None:
    kiosk.post(Reset("staff"))
    kiosk.loop.pump_until(lambda: kiosk.view.screen == "idle")


class FileSizeLimit:
    """RLIMIT_FSIZE: no file of this process may grow. SQLite then gets EFBIG on its next
    WAL append: a real failed write, as on a full SD card."""

    def __enter__(self):
        self.old = resource.getrlimit(resource.RLIMIT_FSIZE)
        self.old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, self.old[1]))
        return self

    def __exit__(self, *exc):
        resource.setrlimit(resource.RLIMIT_FSIZE, self.old)
        signal.signal(signal.SIGXFSZ, self.old_handler)


@pytest.mark.parametrize("offline", [False, True])
def test_a_loan_whose_journal_write_fails_is_refused_on_screen_and_lending_stops(tmp_path, demo_pki, offline):
    config = kiosk_config(tmp_path, demo_pki, offline_lending=True)
    kiosk = Kiosk(config)
    try:
        kiosk.services.worker.stop(timeout=2)                   # keep the queue still for the check below
        if offline:
            sign_in_card(kiosk)                                 # online once: the card's link is cached
            end_session(kiosk)
            kiosk.services.catalogue.available = False
            sign_in_card(kiosk)
            assert kiosk.controller.session.p.offline
        else:
            sign_in_patron(kiosk)
        kiosk.view.light_log.clear()
        kiosk.view.cues.clear()
        shown_before = len(kiosk.view.shown)
        wal = Path(config["kiosk"]["data_dir"]) / "kiosk.db-wal"
        kiosk.services.store.checkpoint()                       # the next commit must grow the WAL
        assert wal.stat().st_size == 0
        with FileSizeLimit():
            kiosk.post(Barcode("10000001"))
        rows = [row for _, model in kiosk.view.shown[shown_before:] for row in model.get("rows", [])]
        assert all(r["state"] != "ok" for r in rows), "the loan was shown as lent"
        assert kiosk.view.model["rows"][-1]["state"] == "refused"
        assert kiosk.view.model["rows"][-1]["refusal"] == "counter_only"      # take it to the counter
        assert "success" not in kiosk.view.light_log and "accepted" not in kiosk.view.cues
        assert kiosk.view.light_log[-1] == "refused" and kiosk.view.cues[-1] == "refused"
        assert kiosk.services.outbox.stats().pending == 0
        kiosk.post(Press("finish"))
        kiosk.loop.pump_until(lambda: kiosk.view.screen == "summary")
        kiosk.post(Press("done"))
        kiosk.staff_sign_in()
        assert kiosk.staff_status()["store_problem"] == "journal_write_failed"
        kiosk.post(Press("back"))
        kiosk.post(Press("exit"))
        assert kiosk.view.screen == "out_of_service"            # once the patron has gone, lending stops
    finally:
        kiosk.close()
    if not offline:
        assert kiosk.services.catalogue.loans_of("20000001") == []    # never sent: it was never journaled


def test_a_full_outbox_refuses_the_item_but_keeps_lending(tmp_path, demo_pki):
    config = kiosk_config(tmp_path, demo_pki)
    kiosk = Kiosk(config)
    try:
        kiosk.services.worker.stop(timeout=2)
        kiosk.services.outbox._capacity = 0                     # noqa: SLF001 - the bound, reached
        sign_in_patron(kiosk)
        kiosk.post(Barcode("10000001"))
        assert kiosk.view.model["rows"][-1]["state"] == "refused"
        assert kiosk.view.cues[-1] == "refused"
        assert not kiosk.controller.session.out_of_service
    finally:
        kiosk.close()


# -- an unreadable database, a read-only data directory -------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_an_unreadable_database_is_kept_and_the_kiosk_is_out_of_service(tmp_path, demo_pki, damage):
    config = kiosk_config(tmp_path, demo_pki)
    data = Path(config["kiosk"]["data_dir"])
    queue_loans(config, 3)
    db = data / "kiosk.db"
    raw = db.read_bytes()
    db.write_bytes(os.urandom(len(raw)) if damage == "garbage" else raw[:len(raw) // 3])
    before = data_files(data)

    for _restart in range(2):                                   # every start: out of service, no crash
        kiosk = Kiosk(config)
        try:
            assert kiosk.view.screen == "out_of_service"
            assert kiosk.services.store_problem == "database_damaged"
            kiosk.staff_sign_in()
            assert kiosk.view.screen == "staff_menu"
            assert kiosk.staff_status()["store_problem"] == "database_damaged"
        finally:
            kiosk.close()
    assert data_files(data) == before

    site = write_site(tmp_path, config)
    status = run_kiosk("sync", "status", "--config", str(site))
    assert status.returncode == 1 and "database_damaged" in status.stdout and "Traceback" not in status.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_a_read_only_data_dir_gives_one_clear_line_and_status_still_reads(tmp_path, demo_pki):
    config = kiosk_config(tmp_path, demo_pki)
    data = Path(config["kiosk"]["data_dir"])
    queue_loans(config, 2)
    site = write_site(tmp_path, config)
    code = ("import json, sys\n"
            "from kiosk.config.load import load_config\n"
            "from kiosk.shell.launcher import build_services\n"
            "from kiosk.logs import setup_logging\n"
            "setup_logging('INFO', 'text', stream=sys.stderr)\n"
            "from pathlib import Path\n"
            f"s = build_services(load_config(Path('{site}')))\n"
            "print(json.dumps({'problem': s.store_problem}))\n"
            "s.close()\n")
    script = (f"mount --bind '{data}' '{data}' && mount -o remount,ro,bind '{data}' && "
              f"{sys.executable} -c \"$KIOSK_CODE\" && "
              f"{sys.executable} -m kiosk sync status --config '{site}' --json")
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=120, cwd=REPO,
                         env={**os.environ, "KIOSK_CODE": code})
    if "mount:" in out.stderr:
        pytest.skip(f"bind mount refused: {out.stderr.strip()}")
    assert len(out.stdout.strip().splitlines()) >= 2, (out.stdout, out.stderr)
    first, second = out.stdout.strip().splitlines()[-2:]
    assert json.loads(first) == {"problem": "data_read_only"}
    status = json.loads(second)
    assert status["pending"] == 2 and status["problem"] == "data_read_only"
    assert "Traceback" not in out.stderr
    unusable = [line for line in out.stderr.splitlines() if "store.unusable" in line]
    assert len(unusable) == 1 and "read-only" in unusable[0]


# -- staff sign-in failures across restarts -----------------------------------------------------------------

def test_wrong_staff_pins_spread_over_restarts_still_lock(tmp_path, demo_pki):
    config = kiosk_config(tmp_path, demo_pki)
    for _restart in range(3):                                   # max_failures is 3: one guess per start
        kiosk = Kiosk(config)
        try:
            kiosk.post(StaffOpen())
            kiosk.pin("1111")
            notice = kiosk.view.model.get("notice")
        finally:
            kiosk.close()
    assert notice == "locked"
    kiosk = Kiosk(config)
    try:
        kiosk.staff_sign_in()                                   # the right PIN waits out the lockout
        assert kiosk.view.screen == "staff_signin"
    finally:
        kiosk.close()


# -- helpers ----------------------------------------------------------------------------------------------

def write_site(tmp_path: Path, config: dict) -> Path:
    site = tmp_path / "kiosk.toml"
    site.write_text(f"[kiosk]\ndata_dir = '{config['kiosk']['data_dir']}'\n[card]\nbackend = 'none'\n"
                    f"[catalogue.local]\npath = '{config['catalogue']['local']['path']}'\n", encoding="utf-8")
    return site


def run_kiosk(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kiosk", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
