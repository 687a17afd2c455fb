"""What the scanner tests share: a thread-safe sink for decoded scans that can be awaited."""

from __future__ import annotations

import threading


class Scans:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, text: str) -> None:
        with self.cond:
            self.items.append(text)
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 3.0) -> list[str]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, timeout), f"got {self.items}"
            return list(self.items)
