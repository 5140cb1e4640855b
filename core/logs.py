"""Log lines as `event key=value …` (LOG_FORMAT=text) or one JSON object per line (LOG_FORMAT=json), so every
failure names its client and conversation.

One record is one line: a value that is not plain is quoted with its control characters escaped, and the message
has its control characters escaped, so nothing a request carries can forge a line. Tracebacks follow on their own
lines, as Python writes them."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_QUOTES_AND_EQUALS = frozenset("\"'=\\")


def format_value(value: object) -> str:
    """Bare when plain (printable, no space, quote, `=` or backslash), else quoted and escaped like repr()."""
    text = str(value)
    if text and text.isprintable() and not any(char == " " or char in _QUOTES_AND_EQUALS for char in text):
        return text
    return repr(text)


def escape_controls(text: str) -> str:
    """`text` with every non-printable character (newlines, CR, ANSI escapes, Unicode separators) escaped."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class KeyValueFormatter(logging.Formatter):
    """Appends the `extra=` fields of a record as key=value pairs, keeping the record on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{key}={format_value(value)}"
                          for key, value in vars(record).items() if key not in _STANDARD)
        if not fields:
            return line
        head, newline, trace = line.partition("\n")
        return f"{head} {fields}{newline}{trace}"

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        clean = logging.makeLogRecord(vars(record))  # a copy: other handlers see the record as logged
        clean.message = escape_controls(record.message)
        return super().formatMessage(clean)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, event (the message) and the `extra=` fields as keys.

    Encoded by the standard library's json (ensure_ascii: control characters and line breaks become escapes, so a
    record stays on one line whatever it carries); a traceback is the `traceback` field, not lines of its own."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(
                                           timespec="milliseconds"), "level": record.levelname,
                                       "logger": record.name, "event": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in document:
                document[key] = value
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=str)


def configure_logging(level: str, log_format: str = "text") -> None:
    """One handler on the root logger writing to stderr (Heroku collects it), in `log_format` (text or json)."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else \
        KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in [h for h in root.handlers if isinstance(h.formatter, (KeyValueFormatter, JsonFormatter))]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    if log_format == "json":
        # The servers' own loggers write through their own handlers, in their own text: in JSON mode they go through
        # the root's, so that every line of the process is an object (gunicorn's master, which never loads the app,
        # keeps its text).
        for server in ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access"):
            logger = logging.getLogger(server)
            for existing in list(logger.handlers):
                logger.removeHandler(existing)
            logger.propagate = True
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2"):  # one line per request, with full URLs
        logging.getLogger(noisy).setLevel(logging.WARNING)
