"""The property-based ("fuzz") profile for every parser of outside input.

`@FUZZ` gives a test the suite's example budget: derandomized so CI is reproducible (the same
examples every run), no per-example deadline on a shared 2-core machine. $KIOSK_FUZZ_EXAMPLES
raises the budget for a longer local hunt (default 500 examples per parser test)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("KIOSK_FUZZ_EXAMPLES", "500"))

FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
