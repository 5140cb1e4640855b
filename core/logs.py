"""Log lines as `event key=value …`, so every failure names its client and conversation."""

from __future__ import annotations

import logging
import sys

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class KeyValueFormatter(logging.Formatter):
    """Appends the `extra=` fields of a record as key=value pairs."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{key}={value!r}" if isinstance(value, str) and " " in value else f"{key}={value}"
                          for key, value in vars(record).items() if key not in _STANDARD)
        if not fields:
            return line
        head, newline, trace = line.partition("\n")
        return f"{head} {fields}{newline}{trace}"


def configure_logging(level: str) -> None:
    """One handler on the root logger writing to stderr (Heroku collects it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for existing in [h for h in root.handlers if isinstance(h.formatter, KeyValueFormatter)]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2"):  # one line per request, with full URLs
        logging.getLogger(noisy).setLevel(logging.WARNING)
