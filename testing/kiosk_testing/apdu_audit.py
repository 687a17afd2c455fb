"""Session-wide APDU audit: every APDU any test sends through an AllowlistTransport is recorded.

Why: the allowlist is the law of the card layer, and a unit test of it can only show
the APDUs it thought of. This plugin records every APDU actually sent in the whole
run (virtual reader, PC/SC, demo, UI tests alike; PIN digits are redacted by the
allowlist before observers see them) to test-artifacts/apdu_audit.jsonl (or
$KIOSK_APDU_AUDIT_FILE), and at the
end re-checks each against the allowlist rules, channel by channel. A forbidden APDU
anywhere fails the run even if every test passed.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from kiosk.card import apdu_allowlist
from kiosk.card.apdu_allowlist import ApduRecord
from kiosk_testing import artifacts_dir

AUDIT_FILE = Path(os.environ.get("KIOSK_APDU_AUDIT_FILE")
                  or artifacts_dir() / "apdu_audit.jsonl")


class ApduAudit:
    """Records to a file private to this pytest process (parallel runs in one checkout must not
    share it), then moves it to the stable name once the run is over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.work_path = path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}")
        self._lock = threading.Lock()
        self._file = open(self.work_path, "w", encoding="utf-8")
        self.count = 0

    def __call__(self, record: ApduRecord) -> None:
        line = json.dumps({"ch": record.channel, "mode": record.mode, "apdu": record.apdu.hex(),
                           "redacted": record.redacted})
        with self._lock:
            self._file.write(line + "\n")
            self.count += 1

    def close(self) -> list[str]:
        """Stop recording, then replay the file from disk (what was recorded, not what we hold)."""
        with self._lock:
            self._file.close()
        records, problems = [], []
        for n, line in enumerate(self.work_path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                row = json.loads(line)
                records.append(ApduRecord(row["ch"], row["mode"], bytes.fromhex(row["apdu"]), row["redacted"]))
            except (ValueError, KeyError, TypeError):
                problems.append(f"line {n} of the audit file is unreadable")
        if len(records) != self.count:
            problems.append(f"{self.count} APDUs were recorded but {len(records)} read back")
        os.replace(self.work_path, self.path)
        return problems + apdu_allowlist.replay(records)


_audit: ApduAudit | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _audit
    if getattr(config, "workerinput", None) is not None:
        return  # xdist worker: keep it simple, audit only single-process runs
    _audit = ApduAudit(AUDIT_FILE)
    apdu_allowlist.add_observer(_audit)


_result: tuple[int, list[str]] | None = None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _audit, _result
    if _audit is None:
        return
    apdu_allowlist.remove_observer(_audit)
    problems = _audit.close()
    _result = (_audit.count, problems)
    _audit = None
    if problems:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _result is None:
        return
    count, problems = _result
    if problems:
        terminalreporter.write_sep("=", "APDU AUDIT FAILED: forbidden APDUs were transmitted", red=True)
        for line in problems[:50]:
            terminalreporter.write_line(line)
    elif count:
        terminalreporter.write_line(f"APDU audit: {count} APDUs sent, all on the allowlist ({AUDIT_FILE})")


@pytest.fixture
def apdu_log():
    """The APDUs sent during one test (redacted records), in order."""
    records: list[ApduRecord] = []
    apdu_allowlist.add_observer(records.append)
    try:
        yield records
    finally:
        apdu_allowlist.remove_observer(records.append)
