"""Logging set-up for people (readable lines) and for schedulers (one JSON object per line).

Cron mail, Airflow and log shippers parse JSON lines reliably; a person at a
terminal wants short text. Both carry the same fields, including any ``extra={...}``
given to a log call (run_id, counts), so a scheduled run is observable without
parsing prose. Messages never contain secrets: URLs are logged through
``leopard_etl.privacy.redact_source``.
"""

from __future__ import annotations

import datetime as dt
import json as jsonlib
import logging
import sys
from typing import IO, Any

__all__ = ["JsonFormatter", "configure_logging"]

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}`` on one line, UTC ISO timestamps."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return jsonlib.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    json: bool = False, level: str = "INFO", stream: IO[str] | None = None
) -> logging.Handler:
    """Route the ``leopard_etl`` loggers to ``stream`` (stderr) as JSON lines or text; idempotent."""
    logger = logging.getLogger("leopard_etl")
    for old in [h for h in logger.handlers if getattr(h, "_leopard", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._leopard = True  # type: ignore[attr-defined]
    if json:
        handler.setFormatter(JsonFormatter())
    else:
        text = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(text, "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler
