"""Progress of long work: a live display on a terminal, a periodic log record everywhere else.

A person running ``leopard-etl run`` at a terminal wants to see that a six-hour REST read
moves; a scheduler wants the same counts in its log, without control characters. So one
small API serves both::

    with Progress.for_task("FHIR REST read", unit="patients") as progress:
        progress.update(total=len(patients))
        progress.advance(25, Observation=180, pages=3)   # 25 patients done, named counters add up

On a terminal (stderr is a TTY, ``CI`` is not set and the logs are not JSON lines) the task is a
row of a ``rich.progress`` display on stderr, shared by every open task. Elsewhere nothing is
drawn: a log record (logger ``leopard_etl.progress``, INFO) carries the counts as fields every
:data:`LOG_EVERY` seconds and once more when the task ends, so the JSON log of a nightly run
shows how far it got. :meth:`Progress.null` does nothing (library use, tests).

Counters are thread-safe (REST reads pages on a thread pool). Labels and counters must not
hold secrets: callers pass URLs through :func:`leopard_etl.privacy.redact_source`.

For files, :func:`for_files` makes a task whose total is the bytes to read; a reader advances it
by the bytes it consumed and counts the resources, which gives bytes of total, resources/s and
the time remaining.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

__all__ = ["LOG_EVERY", "Progress", "for_files", "interactive", "status"]

log = logging.getLogger("leopard_etl.progress")

#: seconds between two progress log records of one task (non-interactive mode)
LOG_EVERY = 30.0
#: seconds between two redraws of one task's row (interactive mode)
_REDRAW_EVERY = 0.1

Mode = Literal["live", "log", "off"]


def _in_ci(env: dict[str, str] | os._Environ[str] | None = None) -> bool:
    value = (env if env is not None else os.environ).get("CI", "")
    return value.strip().lower() not in ("", "0", "false", "no")


def _json_logs() -> bool:
    from .logs import JsonFormatter

    handlers = logging.getLogger("leopard_etl").handlers
    return any(isinstance(h.formatter, JsonFormatter) for h in handlers)


def interactive(stream: IO[str] | None = None) -> bool:
    """True when a live display helps: stderr is a terminal, not CI, logs are not JSON lines."""
    stream = stream or sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        tty = False
    return tty and not _in_ci() and not _json_logs()


# -- the one live display, shared by the open tasks -----------------------------------------------
_live_lock = threading.Lock()
_live: Any = None  # rich.progress.Progress while at least one task is open
_live_users = 0


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _acquire_live() -> Any:
    global _live, _live_users
    with _live_lock:
        if _live is None:
            from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            _live = RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=_console(),
                transient=False,
            )
            _live.start()
        _live_users += 1
        return _live


def _release_live() -> None:
    global _live, _live_users
    with _live_lock:
        _live_users -= 1
        if _live_users <= 0 and _live is not None:
            _live.stop()
            _live = None
            _live_users = 0


@contextmanager
def status(label: str) -> Iterator[None]:
    """A step without counts: a spinner row on a terminal, one log line elsewhere.

    Use it instead of a separate ``Console.status`` so that the step and the progress of the
    tasks inside it share one live display (two displays on one terminal overwrite each other).
    """
    with Progress.for_task(label, unit="") as task:
        task.quiet_log = True
        log.info("%s", label)
        yield


# -- formatting -------------------------------------------------------------------------------------
def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def _clock_text(seconds: float) -> str:
    whole = max(0, round(seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """One long task: a completed count (of an optional total, in ``unit``) and named counters.

    Build it with :meth:`for_task` (live on a terminal, log records elsewhere) or :meth:`null`;
    use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        label: str,
        total: float | None = None,
        unit: str = "items",
        *,
        mode: Mode = "log",
        log_every: float | None = None,
        rate_of: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.mode: Mode = mode
        self.log_every = LOG_EVERY if log_every is None else log_every
        #: the counter whose per-second rate is shown (``resources`` for files)
        self.rate_of = rate_of
        self.completed: float = 0
        self.counts: dict[str, Any] = {}
        self.quiet_log = False  # status(): the start line is enough, no final record
        self._clock = clock
        self._log = logger or log
        self._lock = threading.Lock()
        self._started = clock()
        self._last_log = self._started
        self._last_draw = 0.0
        self._closed = False
        self._live: Any = None
        self._task: Any = None
        if mode == "live":
            self._live = _acquire_live()
            self._task = self._live.add_task(label, total=total, detail="")

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def for_task(
        cls,
        label: str,
        total: float | None = None,
        unit: str = "items",
        *,
        log_every: float | None = None,
        rate_of: str | None = None,
    ) -> Progress:
        """A task shown live on a terminal, logged periodically otherwise (see the module docstring)."""
        mode: Mode = "live" if interactive() else "log"
        return cls(label, total, unit, mode=mode, log_every=log_every, rate_of=rate_of)

    @classmethod
    def null(cls) -> Progress:
        """A task that shows and logs nothing (the default of a reader used outside a run)."""
        return cls("", mode="off")

    # -- counting ----------------------------------------------------------------------------------
    def advance(self, n: float = 1, **counts: float) -> None:
        """``n`` more units done; each named counter grows by its value (``pages=1, Observation=200``)."""
        if self.mode == "off":
            return
        with self._lock:
            self.completed += n
            for key, value in counts.items():
                self.counts[key] = self.counts.get(key, 0) + value
        self._tick()

    def update(self, *, completed: float | None = None, total: float | None = None, **values: Any) -> None:
        """Set the completed count, the total, or named values (``status="40%"``) outright."""
        if self.mode == "off":
            return
        with self._lock:
            if completed is not None:
                self.completed = completed
            if total is not None:
                self.total = total
            self.counts.update(values)
        self._tick()

    # -- reading -----------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self._clock() - self._started

    def eta(self) -> float | None:
        """Seconds left at the mean rate so far; None without a total or before any progress."""
        if not self.total or self.completed <= 0:
            return None
        spent = self.elapsed()
        if spent <= 0:
            return None
        return max(0.0, (self.total - self.completed) * spent / self.completed)

    def snapshot(self) -> dict[str, Any]:
        """The counts as log fields: ``progress`` (label), ``done``, ``total``, ``unit``, counters."""
        with self._lock:
            fields: dict[str, Any] = {
                "progress": self.label,
                "done": self.completed,
                "total": self.total,
                "unit": self.unit,
                "elapsed_s": round(self.elapsed(), 1),
                **self.counts,
            }
        eta = self.eta()
        if eta is not None:
            fields["eta_s"] = round(eta, 1)
        if self.rate_of and self.elapsed() > 0:
            rate = float(self.counts.get(self.rate_of, 0)) / self.elapsed()
            fields[f"{self.rate_of}_per_s"] = round(rate, 1)
        return fields

    def detail(self) -> str:
        """One line: ``120 of 300 patients · Observation 1,200 · pages 45 · 85 resources/s · ETA 0:12``."""
        with self._lock:
            done, total, counts = self.completed, self.total, dict(self.counts)
        amount = (lambda v: _human_bytes(v)) if self.unit == "bytes" else (lambda v: f"{v:,.0f}")
        parts: list[str] = []
        if self.unit:
            unit = "" if self.unit == "bytes" else f" {self.unit}"
            parts.append(f"{amount(done)} of {amount(total)}{unit}" if total else f"{amount(done)}{unit}")
        for key, value in counts.items():
            shown = f"{value:,.0f}" if isinstance(value, int | float) else str(value)[:60]
            parts.append(f"{key} {shown}")
        spent = self.elapsed()
        if self.rate_of and spent > 0:
            parts.append(f"{float(counts.get(self.rate_of, 0)) / spent:,.0f} {self.rate_of}/s")
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {_clock_text(eta)}")
        return " · ".join(parts)

    # -- output ------------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = self._clock()
        if self.mode == "live":
            if now - self._last_draw >= _REDRAW_EVERY:
                self._last_draw = now
                self._draw()
        elif self.mode == "log" and now - self._last_log >= self.log_every:
            self._last_log = now
            self._emit("")

    def _draw(self) -> None:
        if self._live is not None and self._task is not None:
            self._live.update(self._task, completed=self.completed, total=self.total, detail=self.detail())

    def _emit(self, suffix: str) -> None:
        self._log.info("%s: %s%s", self.label, self.detail() or "working", suffix, extra=self.snapshot())

    def close(self) -> None:
        """End the task: its row stays drawn complete on a terminal; one last log record elsewhere."""
        if self._closed:
            return
        self._closed = True
        if self.mode == "live":
            self._draw()
            if self._live is not None and self._task is not None:
                if self.quiet_log:
                    self._live.remove_task(self._task)
                else:
                    self._live.stop_task(self._task)
            _release_live()
        elif self.mode == "log" and not self.quiet_log:
            self._emit(f" (done in {_clock_text(self.elapsed())})")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def for_files(paths: Iterable[Path], label: str = "reading FHIR files") -> Progress:
    """A task over the bytes of ``paths``: advance it by bytes read, count ``resources=`` as they go.

    The display shows bytes read of the total, resources per second and the time remaining.
    """
    total = 0
    for path in paths:
        try:
            total += Path(path).stat().st_size
        except OSError:
            continue
    return Progress.for_task(label, total=total or None, unit="bytes", rate_of="resources")
