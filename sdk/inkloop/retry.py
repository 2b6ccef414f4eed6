"""Waiting for a condition and retrying a call: one helper for each, so every loop in inkloop
waits and backs off the same way.

Why a module of our own and not tenacity: tenacity comes only with Airflow, not with the base
install that ``inkloop serve`` and the local servers run in, and the two patterns inkloop needs
fit in a few lines each:

- :func:`wait_until`: a readiness poll (a server's health URL answers, a process group is gone, a
  worker's log says "ready"). It checks at once, then every ``interval`` seconds until the
  condition holds, the caller's ``give_up`` says it never will (the server process exited), or
  ``timeout`` seconds have passed. The caller raises its own error, with what it knows (a log
  tail, the last answer), because only it knows what went wrong.
- :func:`retry`: a call that may fail transiently (a server restarting, a connection reset).
  Failures that ``retryable`` accepts are retried after doubling pauses (:class:`Backoff`); the
  last failure, or the first one that is not retryable, propagates unchanged so the caller words
  the message.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

__all__ = ["Backoff", "retry", "wait_until"]


def wait_until(
    ready: Callable[[], object],
    timeout: float,
    *,
    interval: float = 0.5,
    give_up: Callable[[], object] | None = None,
) -> bool:
    """Poll ``ready()`` until it is true (True), ``give_up()`` is true, or ``timeout`` s pass (False).

    ``ready`` is called at least once, even with a zero timeout; ``give_up`` is asked before each
    check (a started server whose process has exited will never answer: no need to wait out the
    timeout). Exceptions from either propagate: a check that may fail transiently catches its own.
    """
    deadline = time.monotonic() + timeout
    while True:
        if give_up is not None and give_up():
            return False
        if ready():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(interval, left))


@dataclass(frozen=True)
class Backoff:
    """How often to try a call and how long to pause between tries.

    ``attempts`` tries in all; the pause before try n+1 is ``first · 2^(n-1)``, at most ``cap``
    seconds. ``jitter`` spreads each pause over [1 - jitter, 1] of it, so clients that failed
    together do not retry together.
    """

    attempts: int = 4
    first: float = 0.5
    cap: float = 30.0
    jitter: float = 0.0

    def pauses(self) -> Iterator[float]:
        """The ``attempts - 1`` pauses between tries, jitter applied."""
        delay = self.first
        for _ in range(self.attempts - 1):
            yield delay * (1.0 - self.jitter * random.random())
            delay = min(delay * 2, self.cap)


def retry(
    call: Callable[[], T],
    backoff: Backoff,
    *,
    retryable: Callable[[Exception], bool] = lambda exc: True,
    on_retry: Callable[[int, Exception, float], None] | None = None,
) -> T:
    """``call()``, tried again after :class:`Backoff`'s pauses while it raises what ``retryable`` accepts.

    ``on_retry(attempt, exc, pause)`` runs before each pause (to log it, or to drop a broken
    connection). The last exception, or one ``retryable`` refuses, propagates unchanged.
    """
    pauses = backoff.pauses()
    attempt = 1
    while True:
        try:
            return call()
        except Exception as exc:
            pause = next(pauses, None) if retryable(exc) else None
            if pause is None:
                raise
            if on_retry is not None:
                on_retry(attempt, exc, pause)
            time.sleep(pause)
            attempt += 1
