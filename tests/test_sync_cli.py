"""`kiosk sync status` and `kiosk sync drain` as staff run them: real files, real processes."""

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from kiosk.config.load import load_config
from kiosk.core.catalogue import LoanRequest
from kiosk.shell.launcher import build_services

REPO = Path(__file__).resolve().parent.parent


def kiosk(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kiosk", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_status_and_drain(tmp_path):
    site = tmp_path / "kiosk.toml"
    site.write_text(f"[kiosk]\ndata_dir = '{tmp_path / 'data'}'\n[card]\nbackend = 'none'\n"
                    f"[catalogue.local]\npath = '{tmp_path / 'ils.json'}'\nseed_demo = true\n")
    services = build_services(load_config(site))
    now = datetime.now().astimezone()
    for n, item in enumerate(("10000001", "10000002", "10000007")):
        services.outbox.append(LoanRequest(txn_id=f"t{n}", patron_id="20000001", item_id=item,
                                           created_at=now))
    # While the kiosk holds the store: status works, drain refuses politely.
    status = kiosk("sync", "status", "--config", str(site), "--json")
    assert status.returncode == 0, status.stderr
    got = json.loads(status.stdout)
    assert got["pending"] == 3 and got["conflicts"] == 0 and got["oldest_pending"]
    from kiosk import __version__

    assert got["release"]["running"] == __version__ and "last_rollback" in got["release"]
    busy = kiosk("sync", "drain", "--config", str(site))
    assert busy.returncode == 2 and "the kiosk is running" in busy.stderr
    services.close()

    drained = kiosk("sync", "drain", "--config", str(site))
    assert drained.returncode == 0, drained.stderr
    assert "sent and acknowledged: 2, refused: 1" in drained.stdout   # 10000007 is on hold
    after = json.loads(kiosk("sync", "status", "--config", str(site), "--json").stdout)
    assert after["pending"] == 0 and after["last_success"]
    for out in (status, busy, drained):
        assert "20000001" not in out.stdout + out.stderr


def test_status_without_data(tmp_path):
    site = tmp_path / "kiosk.toml"
    site.write_text(f"[kiosk]\ndata_dir = '{tmp_path / 'none'}'\n")
    out = kiosk("sync", "status", "--config", str(site))
    assert out.returncode == 1 and "no kiosk data" in out.stderr


def test_drain_says_when_the_library_system_takes_no_checkouts(tmp_path, sip2_library):
    """The ACS's 98 says 'checkout not allowed': staff's drain sends nothing and says why."""
    from kiosk_testing.sip2_server import INSTITUTION, ITEM_NEKO, PATRON_OK, SIP_PASSWORD, SIP_USER, KohaQuirksAcs

    acs = KohaQuirksAcs(sip2_library)
    acs.checkout_ok = False
    try:
        (tmp_path / "sip-password").write_text(SIP_PASSWORD + "\n")
        site = tmp_path / "kiosk.toml"
        site.write_text(f"[kiosk]\ndata_dir = '{tmp_path / 'data'}'\n[card]\nbackend = 'none'\n"
                        f"[catalogue]\nbackend = 'sip2'\ntimeout = 2\n[catalogue.sip2]\nhost = '127.0.0.1'\n"
                        f"port = {acs.port}\ntls = false\nlogin_user = '{SIP_USER}'\n"
                        f"password_file = '{tmp_path / 'sip-password'}'\ninstitution = '{INSTITUTION}'\n")
        services = build_services(load_config(site))
        services.outbox.append(LoanRequest(txn_id="t-held", patron_id=PATRON_OK, item_id=ITEM_NEKO,
                                           created_at=datetime.now().astimezone()))
        services.close()
        held = kiosk("sync", "drain", "--config", str(site))
        assert held.returncode == 1, held.stdout + held.stderr
        assert "takes no checkouts now" in held.stderr and "still pending: 1" in held.stdout
        assert "11" not in sip2_library.requests and sip2_library.checkouts == []
        assert PATRON_OK not in held.stdout + held.stderr
    finally:
        acs.stop()
