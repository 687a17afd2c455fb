"""Data shipped inside the package and read at run time: the configuration defaults
(`defaults.toml`), the J-LIS user-authentication CA certificates (`trust/jpki/`) and the demo
catalogue. Read through `shipped()`, never relative to the source checkout, so an installed
wheel finds them."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def shipped(*parts: str) -> Path:
    """The real path of a shipped file or folder (wheels install unzipped, so it is one)."""
    return Path(str(files(__name__).joinpath(*parts)))
