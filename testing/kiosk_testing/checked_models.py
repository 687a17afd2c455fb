"""Every screen model a test sees is held to its type (kiosk/core/screen_models.py).

The drivers of the pure machines pass their effects through `check_shows`, so a model
that does not match its screen fails the test that made it. A model refused by a view
(KioskView's "view.model_refused" log, RecordingView below the controller) fails the
test too, at teardown: the controller runs each effect inside a try, so raising there
would only be logged. A test that means a model to be refused takes `refused_models`
and empties it once it has looked.
"""

from __future__ import annotations

import logging
from typing import Iterable, Iterator, TypeVar

import pytest

from kiosk.core import effects as fx
from kiosk.core.screen_models import check_model

T = TypeVar("T", bound=Iterable)

# (screen, key) of each model a view refused during the current test.
REFUSED: list[tuple[str, str | None]] = []


def check_shows(effects: T) -> T:
    """Raise ScreenModelError for the first Show in `effects` whose model does not fit."""
    for effect in effects:
        if isinstance(effect, fx.Show):
            check_model(effect.screen, effect.model)
    return effects


class _Refusals(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "view.model_refused":
            fields = getattr(record, "kiosk_fields", {})
            REFUSED.append((str(fields.get("screen")), fields.get("key")))


@pytest.fixture(autouse=True)
def _no_model_refused() -> Iterator[None]:
    REFUSED.clear()
    handler = _Refusals(logging.ERROR)
    logger = logging.getLogger("kiosk.screens")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    refused, REFUSED[:] = list(REFUSED), []
    assert not refused, f"a view refused these models (screen, key): {refused}"


@pytest.fixture
def refused_models() -> list[tuple[str, str | None]]:
    """The (screen, key) pairs a view refused so far in this test; clear it to accept them."""
    return REFUSED
