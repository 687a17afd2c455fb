"""Central IT's Prometheus files (config/prometheus/): promtool accepts them, the alerts fire when
they should (promtool's own rule unit tests), and every kiosk metric they name is one the kiosk
really exports.

promtool comes from Debian's `prometheus` package (scripts/setup.sh installs it for the test
command). Without it the test is skipped on a developer's machine and fails in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiosk.core import events as ev
from kiosk.shell.metrics import KioskMetrics

PROM = Path(__file__).resolve().parent.parent / "config" / "prometheus"
PROMTOOL = shutil.which("promtool")


@pytest.fixture
def promtool() -> str:
    if PROMTOOL is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing (Debian package `prometheus`; scripts/setup.sh installs it)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return PROMTOOL


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_alert_rules(promtool):
    r = run(promtool, "check", "rules", "kiosk-alerts.yml", cwd=PROM)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 7 rules found" in r.stdout


def test_the_alerts_fire_when_they_should(promtool):
    """KioskDown after 5 minutes down, KioskOutboxStale past 30 minutes, KioskReaderGone,
    KioskOutboxDamaged, KioskRolledBack for an hour after a rollback seen only after a restart,
    KioskReleaseRolledBack for an hour after the release guard rolled back."""
    r = run(promtool, "test", "rules", "kiosk-alerts.test.yml", cwd=PROM)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_accepts_the_scrape_example(promtool, tmp_path, fleet_pki):
    """The example as shipped, with its certificate paths pointed at real files (promtool
    checks that they exist)."""
    text = (PROM / "prometheus.yml").read_text(encoding="utf-8")
    text = (text.replace("/etc/prometheus/kiosk/ca.pem", str(fleet_pki.ca))
                .replace("/etc/prometheus/kiosk/prometheus.pem", str(fleet_pki.client_cert))
                .replace("/etc/prometheus/kiosk/prometheus.key", str(fleet_pki.client_key))
                .replace("/etc/prometheus/kiosk/targets", str(tmp_path / "targets")))
    (tmp_path / "prometheus.yml").write_text(text, encoding="utf-8")
    shutil.copy(PROM / "kiosk-alerts.yml", tmp_path)
    r = run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_every_metric_the_alerts_name_is_exported_by_the_kiosk():
    now = datetime(2025, 4, 1, 12, 0, tzinfo=timezone.utc)
    stats = SimpleNamespace(pending=1, oldest_created=now - timedelta(minutes=1), damaged=0, conflicts=0,
                            last_success=now)
    m = KioskMetrics(outbox_stats=lambda: stats, layer_rollbacks=lambda: (1, 1.0e9),
                     scanner_ok=lambda: True, wall=lambda: now)
    m.observe(ev.ReaderChanged(True))
    exported = {s.name for f in text_string_to_metric_families(m.render()[1].decode()) for s in f.samples}
    named = set(re.findall(r"\bkiosk_[a-z_]+", (PROM / "kiosk-alerts.yml").read_text(encoding="utf-8")))
    named = {n for n in named if not n.endswith("_")}
    assert named and named <= exported, named - exported
    devices = {s.labels.get("device") for f in text_string_to_metric_families(m.render()[1].decode())
               for s in f.samples if s.name == "kiosk_device_up"}
    assert devices == {"reader", "pcscd", "scanner"}
