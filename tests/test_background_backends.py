"""The backends built on a thread beside the first frame (kiosk.shell.launcher.BackgroundBackends):
built once the first screen has read the store, joined by the UI thread, never built after a stop."""

from __future__ import annotations

from pathlib import Path

from kiosk.config.load import load_config
from kiosk.shell.launcher import BackgroundBackends, open_services


def site(tmp_path: Path) -> dict:
    p = tmp_path / "kiosk.toml"
    p.write_text(f"[kiosk]\ndata_dir = '{tmp_path / 'data'}'\n[card]\nbackend = 'none'\n"
                 f"[catalogue.local]\npath = '{tmp_path / 'ils.json'}'\nseed_demo = true\n")
    return load_config(p)


def test_built_on_go_and_joined_by_wait(tmp_path):
    services = open_services(site(tmp_path))
    services.backends = backends = BackgroundBackends(services, demo=False)
    try:
        assert services.outbox is None and services.staff_backend is None     # waits for go()
        backends.go()
        backends.wait()
        assert services.outbox is not None and services.staff_backend is not None
        assert backends._thread.name == "backends" and not backends._thread.is_alive()
    finally:
        services.close()


def test_a_stop_before_the_first_frame_builds_nothing(tmp_path):
    services = open_services(site(tmp_path))
    services.backends = backends = BackgroundBackends(services, demo=False)
    services.close()
    assert not backends._thread.is_alive()
    assert services.outbox is None and services.catalogue is None
