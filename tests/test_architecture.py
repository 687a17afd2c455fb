"""The architecture as a test, run on the installed package: import-linter's contracts
(pyproject.toml, [tool.importlinter]) and mypy on the plain-data packages (TYPED, with
the settings in [tool.mypy]).

All run from a directory outside the checkout so that they read what was installed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
BIN = Path(sys.executable).parent
TYPED = ("kiosk.core", "kiosk.card", "kiosk.store", "kiosk.config", "kiosk.release", "kiosk.sync")


def run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_import_contracts_hold(tmp_path):
    out = run(tmp_path, str(BIN / "lint-imports"), "--no-cache", str(PYPROJECT))
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_a_broken_contract_is_reported(tmp_path):
    """The checker really reads the installed package: a contract that the tree breaks fails."""
    config = tmp_path / "contracts.toml"
    config.write_text('[tool.importlinter]\nroot_packages = ["kiosk"]\n\n'
                      '[[tool.importlinter.contracts]]\nname = "shell may not import core (false)"\n'
                      'type = "forbidden"\nsource_modules = ["kiosk.shell"]\nforbidden_modules = ["kiosk.core"]\n',
                      encoding="utf-8")
    out = run(tmp_path, str(BIN / "lint-imports"), "--no-cache", str(config))
    assert out.returncode == 1 and "BROKEN" in out.stdout


def test_mypy_passes_on_the_plain_data_packages(tmp_path):
    args = [str(BIN / "mypy"), "--config-file", str(PYPROJECT), "--cache-dir", str(tmp_path / "cache")]
    for package in TYPED:
        args += ["-p", package]
    out = run(tmp_path, *args)
    assert out.returncode == 0, out.stdout[-8000:]
    checked = re.search(r"Success: no issues found in (\d+) source files", out.stdout)
    assert checked and int(checked.group(1)) >= 30, out.stdout

