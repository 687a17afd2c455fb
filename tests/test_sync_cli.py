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
