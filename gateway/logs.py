"""Logging: one JSON object per line in production, readable text in development.

Each record carries the request id of the request being served (a context variable),
and any `extra={...}` fields given at the call site (director, cohorts, duration_s…).
"""

import contextvars
import itertools
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


class _RequestIds:
    """Ids unique across processes: a random per-process prefix and a counter (cheaper
    than a uuid4 per request, which reads the OS's random source each time)."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_request_ids = _RequestIds()


def new_request_id() -> str:
    """A fresh request id: 32 hex digits, like a uuid4's."""
    return _request_ids.next()


# Attributes every LogRecord has; anything else came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "rid",
    "color_message",  # uvicorn's ANSI copy of the message
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


# Characters that end a line, or that a terminal acts on, in the text format: C0 and C1
# controls, DEL, and the Unicode line and paragraph separators. Written as escapes, so that
# a value a client chose (an operation name, an event id, a path) never starts a line.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: the encoder escapes every control character in a string
    (a line break inside a value is `\\n`), so no value can start a line of its own."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time level logger [request id]: message  key=value…`, control characters escaped;
    a traceback follows on lines of its own, each prefixed with `  | `."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(rid)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        request_id = request_id_var.get()
        record.rid = f" [{request_id}]" if request_id else ""
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = escape(self.formatMessage(record))
        fields = _extras(record)
        if fields:
            line += "  " + " ".join(f"{escape(str(k))}={escape(str(v))}" for k, v in fields.items())
        blocks = []
        if record.exc_info:
            blocks.append(self.formatException(record.exc_info))
        if record.stack_info:
            blocks.append(self.formatStack(record.stack_info))
        for block in blocks:
            # splitlines() breaks at every line boundary a reader might see, \x1c and
            # U+2028 included: each piece is then a prefixed line, escaped within.
            line += "".join(f"\n  | {escape(part)}" for part in block.splitlines())
        return line


def configure(log_format: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's and arq's loggers propagate to the root handler: one format for all lines.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # The access log is gateway.http.access's (structured, when GATEWAY_ACCESS_LOG is on).
    logging.getLogger("uvicorn.access").disabled = True
