"""The kiosk's test peers and fixtures, shared by tests/ and bench/: pcscd with the vpcd virtual
reader and the virtual My Number Card, the SIP2 (pysip2) and REST catalogue servers on 127.0.0.1,
the fleet PKI, a real Kivy window. Each module is also a pytest plugin (tests/conftest.py loads
them all). Installed beside the kiosk wheel by the test command; never on a production kiosk."""

import os
from pathlib import Path


def artifacts_dir() -> Path:
    """Where tests write screenshots and the APDU audit: $KIOSK_TEST_ARTIFACTS, else
    ./test-artifacts under the directory pytest runs in (the checkout)."""
    return Path(os.environ.get("KIOSK_TEST_ARTIFACTS") or Path.cwd() / "test-artifacts")
