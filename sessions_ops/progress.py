"""Progress of long work (`sessions import`, `sessions restore`) on stderr, while stderr is a
terminal: what is done so far and how fast, redrawn in place (rich), then one summary line.
On anything else (a pipe, a log file) it writes nothing: there, only errors are said."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import Progress, TaskID, TextColumn

from sessions_ops.output import say


class Shown:
    """`with Shown("importing", "rows") as shown: shown.advance(n)`; `summary` at the end."""

    def __init__(self, doing: str, unit: str, *, terminal: bool | None = None) -> None:
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.unit = unit
        self.done = 0
        self.started = time.monotonic()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if self.terminal:
            self._progress = Progress(
                TextColumn("sessions-api: {task.description}"),
                TextColumn("{task.completed:,} " + unit),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[more]}"),
                console=Console(stderr=True),
                transient=True,
                # Results stay on stdout, untouched (rich would draw them above the line).
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._task = self._progress.add_task(doing, rate="", more="")

    def __enter__(self) -> Shown:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-6)

    def advance(self, count: int = 1, *, more: str = "") -> None:
        self.done += count
        if self._progress is not None and self._task is not None:
            rate = f"{self.rate():,.0f} {self.unit}/s"
            self._progress.update(self._task, completed=self.done, rate=rate, more=more)

    def summary(self, text: str) -> None:
        """One line when it is over, on a terminal only."""
        if self.terminal:
            seconds = time.monotonic() - self.started
            say(f"{text} in {seconds:.1f} s ({self.rate():,.0f} {self.unit}/s)")
