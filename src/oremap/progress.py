"""The one kind of progress display of oremap: a rich bar, through :func:`progress`.

On a terminal (or in Jupyter) a live rich bar, drawn on the console that logging writes to
(the :class:`rich.logging.RichHandler` of the root logger, as the command line sets up), so
that log lines scroll above the bars and bars opened inside one another stack. Anywhere else
(a log file, a pipe) there are no animation frames: one line per finished task
(``desc: n/total units in t s``), or nothing for a transient bar.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["ProgressBar", "progress", "progress_console"]

_FALLBACK: list[Console] = []  # the stderr console used when logging has no RichHandler


def progress_console() -> Console:
    """The console progress bars draw on: the root logger's RichHandler's, else stderr's."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, RichHandler):
            return handler.console
    if not _FALLBACK:
        _FALLBACK.append(Console(stderr=True))
    return _FALLBACK[0]


class ProgressBar:
    """A bar's counter; :meth:`update` may be called from any thread."""

    def __init__(self, total: int, bar: Progress | None = None,
                 task: TaskID | None = None) -> None:
        self.total = int(total)
        self.n = 0
        self._bar, self._task = bar, task
        self._lock = threading.Lock()

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        with self._lock:
            self.n += n
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def reset(self, total: int, desc: str | None = None) -> None:
        """Start again from 0 of ``total`` units (e.g. the windows of the next layer)."""
        with self._lock:
            self.n, self.total = 0, int(total)
        if self._bar is not None and self._task is not None:
            self._bar.reset(self._task, total=total, description=desc)


def _plural(unit: str, n: int) -> str:
    return unit if n == 1 or unit.endswith("s") else unit + "s"


@contextlib.contextmanager
def progress(total: int, desc: str, unit: str = "item", *, disable: bool = False,
             transient: bool = False, console: Console | None = None
             ) -> Iterator[ProgressBar]:
    """A progress bar of ``total`` units labelled ``desc``; yields its :class:`ProgressBar`.

    Parameters
    ----------
    total : int
        Units of work.
    desc : str
        What is being done (e.g. ``"predict"``).
    unit : str
        Name of one unit (``"member"``, ``"tile"``), in the one-line summary.
    disable : bool
        Show nothing (the counter still counts).
    transient : bool
        Remove the bar when done (on a terminal); print no summary line elsewhere.
    console : rich.console.Console or None
        Where to draw; None: :func:`progress_console`.
    """
    if disable:
        yield ProgressBar(total)
        return
    console = console or progress_console()
    if not (console.is_jupyter or (console.is_terminal and not console.is_dumb_terminal)):
        counter = ProgressBar(total)
        t0 = time.perf_counter()
        try:
            yield counter
        finally:
            if not transient:
                seconds = time.perf_counter() - t0
                console.print(Text(f"{desc}: {counter.n}/{total} {_plural(unit, total)} in "
                                   f"{seconds:.1f} s"), soft_wrap=True)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn(_plural(unit, total)), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=transient) as bar:
        yield ProgressBar(total, bar, bar.add_task(desc, total=total))
