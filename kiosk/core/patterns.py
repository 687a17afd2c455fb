"""Configured patterns (item, library card and badge barcodes, offline refusals) are matched
with RE2, not `re`: RE2 runs in time linear in the input whatever the pattern, so a pushed
pattern such as ``^(\\d+)+X$`` cannot hold the UI thread for minutes (with `re` it
backtracks exponentially). RE2's `\\d`, `\\w` and `\\s` are ASCII only, as `re.ASCII` was.
Patterns RE2 cannot run (back-references, look-around) are refused when the layer is
validated (`pattern_error`), so a kiosk never meets one at a scan.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import re2

_MAX_MEM = 8 << 20          # RE2's default; a pattern whose program needs more does not compile


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False          # errors come back as re2.error, never on stderr
    options.max_mem = _MAX_MEM
    return options


@functools.lru_cache(maxsize=128)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _options())


def pattern_error(pattern: str) -> str | None:
    """Why `pattern` cannot be a configured pattern, or None when it can. Python's parser
    checks the syntax first (RE2 would take `a{99999999999}` as literal text), then RE2
    must accept it too."""
    try:
        re.compile(pattern)
    except re.error as e:
        return f"not a valid regular expression ({e})"
    except (OverflowError, RecursionError):        # a{99999999999}, or ((((...)))) 500 deep
        return "regular expression too large to compile"
    try:
        _compiled(pattern)
    except re2.error as e:
        detail = e.args[0] if e.args else ""
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        if any(word in text for word in ("repetition size", "too large", "nested too deeply", "too big")):
            return f"regular expression too large to compile ({text[:120]})"
        return f"not a valid regular expression for the kiosk's linear-time matcher ({text[:120]})"
    except (TypeError, ValueError, OverflowError) as e:
        return f"not a valid regular expression ({type(e).__name__})"
    return None


def fullmatch(pattern: str, text: str) -> bool:
    """Whether all of `text` matches `pattern` (validated beforehand: see pattern_error)."""
    return _compiled(pattern).fullmatch(text) is not None
