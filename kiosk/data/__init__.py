"""Data shipped inside the package and read at run time: the configuration defaults
(`defaults.toml`), the J-LIS user-authentication CA certificates (`trust/jpki/`) and the demo
catalogue. Read through `shipped()`, never relative to the source checkout, so an installed
wheel finds them."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def shipped(*parts: str) -> Path:
    """The real path of a shipped file or folder. Wheels install unzipped, so it is this
    package's folder; not importlib.resources, whose readers import zipfile on the first
    frame's path (bench/bench_ui.py)."""
    return _HERE.joinpath(*parts)
