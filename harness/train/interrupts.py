"""SIGTERM and Ctrl-C stop a run at the next step boundary, with a checkpoint, in every way a run is started.

:func:`stop_on_signals` is what :func:`harness.train.run.execute` wraps training in when it runs in the main
thread (``harness run``, the debug executor): the first SIGTERM or SIGINT sets a flag that the engine reads
after every step (it then writes ``latest.pt`` and ``status.json`` ``stopped`` and raises
``StopRequested``); a second SIGINT aborts at once (``KeyboardInterrupt``; the run resumes from its previous
checkpoint). Grid tasks that train in a worker thread install their own handlers (:mod:`harness.launch.task`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Callable, Iterator

__all__ = ["StopFlag", "stop_on_signals"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """Set by the first signal; ``reason`` is its name."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __bool__(self) -> bool:
        return self.reason is not None


@contextlib.contextmanager
def stop_on_signals(should_stop: Callable[[], bool] | None = None) -> Iterator[tuple[Callable[[], bool], StopFlag]]:
    """``(should_stop, flag)``: the caller's ``should_stop`` or a signal received. Outside the main thread
    (where Python cannot install handlers) only the caller's ``should_stop`` counts."""
    flag = StopFlag()

    def check() -> bool:
        return bool(flag) or (should_stop is not None and should_stop())

    if threading.current_thread() is not threading.main_thread():
        yield check, flag
        return

    def on_signal(signum, frame):
        name = signal.Signals(signum).name
        if flag and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not flag:
            flag.reason = name
            again = " (Ctrl-C again aborts without a checkpoint)" if signum == signal.SIGINT else ""
            print(f"\nharness: {name} received: checkpointing at the end of this step{again}", file=sys.stderr,
                  flush=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    try:
        yield check, flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
