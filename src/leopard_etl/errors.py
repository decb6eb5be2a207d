"""Exit codes and the one exception type that ends a run with a one-line message.

Exception tree::

    LeopardError            (exit code carried by the instance)
    ├── ConfigError         EXIT_CONFIG      bad configuration / arguments / mappings
    ├── SourceError         EXIT_SOURCE      source unreachable or unusable (server, DB, files)
    ├── QuarantineError     EXIT_QUARANTINE  quarantined share above the configured threshold
    └── LockHeldError       EXIT_LOCK        another run holds the warehouse lock

Anything else escaping to the CLI is an internal error (EXIT_INTERNAL).
"""

from __future__ import annotations

__all__ = [
    "EXIT_CONFIG",
    "EXIT_INTERNAL",
    "EXIT_LOCK",
    "EXIT_OK",
    "EXIT_QUARANTINE",
    "EXIT_SOURCE",
    "ConfigError",
    "LeopardError",
    "LockHeldError",
    "QuarantineError",
    "SourceError",
]

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_SOURCE = 3
EXIT_QUARANTINE = 4
EXIT_LOCK = 5
EXIT_INTERNAL = 70


class LeopardError(Exception):
    """An error the user can fix; ``str(err)`` is one line saying what and how."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message} — {fix}" if fix else message)


class ConfigError(LeopardError):
    exit_code = EXIT_CONFIG


class SourceError(LeopardError):
    exit_code = EXIT_SOURCE


class QuarantineError(LeopardError):
    exit_code = EXIT_QUARANTINE


class LockHeldError(LeopardError):
    exit_code = EXIT_LOCK
