"""Logging set-up: structured ``key=value`` lines on stderr.

Use ``get_logger("pynet.<pkg>")`` and pass context as keyword fields through ``extra={"kv": {...}}``
or simply format ``key=value`` pairs into the message. Full rule dumps go to DEBUG only.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["get_logger", "setup_logging"]


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = f"time={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} level={record.levelname.lower()} logger={record.name} msg={record.getMessage()!r}"
        kv = getattr(record, "kv", None)
        if isinstance(kv, dict):
            base += "".join(f" {k}={v}" for k, v in kv.items())
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


def setup_logging(level: str | int = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("pynet")
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else level.upper())
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
