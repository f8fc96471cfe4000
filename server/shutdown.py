"""Signals and the exit deadline shared by every long-running command.

The first SIGINT/SIGTERM asks for a graceful stop and arms a deadline: if the process is
still alive ``deadline_s`` later (a client that never leaves, a task that ignores its
cancellation, a thread that does not join) it exits at once. A second signal exits at once
too. Either way the recordings stay playable: their fragments are already on disk
(server/recording.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("anchor.shutdown")
T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exit_now(code: int, why: str) -> None:
    log.error("exiting now: %s", why)
    logging.shutdown()
    os._exit(code)


class ExitOnSignals:
    """Install on the running loop: ``on_first`` runs at the first signal (from the loop),
    ``os._exit(128 + signum)`` at the second or when ``deadline_s`` has passed since the first.
    """

    def __init__(self, on_first: Callable[[], None], deadline_s: float) -> None:
        self.on_first = on_first
        self.deadline_s = deadline_s
        self.received: int | None = None
        self._timer: threading.Timer | None = None
        self._loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            self._loop.add_signal_handler(signum, self._signalled, signum)

    def _signalled(self, signum: int) -> None:
        if self.received is not None:
            _exit_now(128 + signum, f"second signal ({signal.Signals(signum).name})")
        self.received = signum
        # A daemon thread: it runs even while the event loop is blocked.
        self._timer = threading.Timer(
            self.deadline_s,
            _exit_now,
            (128 + signum, f"still running {self.deadline_s:g} s after the signal"),
        )
        self._timer.daemon = True
        self._timer.start()
        self.on_first()

    def remove(self) -> None:
        """Uninstall the handlers. An armed deadline stays armed: what runs after a clean
        stop (``asyncio.run`` cancelling leftover tasks, joining executor threads) is
        bounded by it too; the timer thread is a daemon, it never delays an exit."""
        for signum in SIGNALS:
            self._loop.remove_signal_handler(signum)


class Interrupted(Exception):
    """The command was stopped by SIGINT/SIGTERM; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


async def cancel_on_signals(main: Coroutine[Any, Any, T], deadline_s: float = 10.0) -> T:
    """Await ``main``; the first SIGINT/SIGTERM cancels it (it may clean up, bounded by
    ``deadline_s``) and raises ``Interrupted``; a second signal exits at once."""
    task = asyncio.ensure_future(main)

    def cancel() -> None:
        task.cancel()

    signals = ExitOnSignals(cancel, deadline_s)
    try:
        return await task
    except asyncio.CancelledError:
        if signals.received is None:
            raise
        raise Interrupted(signals.received) from None
    finally:
        signals.remove()
