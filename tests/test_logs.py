"""Log lines a client cannot forge: in the text format every control character a value
carries is escaped and a traceback's lines are prefixed; in JSON each record is one line."""

import io
import json
import logging
import re
from collections.abc import Iterator

import orjson
import pytest

from gateway import logs
from gateway.logs import JsonFormatter, TextFormatter
from tests.support.dataset import DANA, NOW
from tests.support.gateway import settings_for, signed
from tests.support.gateway_client import fixed_clock, gateway_client

FORGED = "12:00:00 ERROR   gateway.auth: admin token issued"
HOSTILE = [
    f"a\n{FORGED}",
    f"a\r\n{FORGED}",
    f"a\r{FORGED}",
    f"a\x0b{FORGED}",
    f"a\x0c{FORGED}",
    f"a\x1c{FORGED}",
    f"a\x85{FORGED}",
    f"a\u2028{FORGED}",
    f"a\u2029{FORGED}",
    f"a\x1b[2K\x1b[1G{FORGED}",  # a terminal's erase-line, then the forgery
]
TEXT_RECORD = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def record(message: str, *args: object, exc: BaseException | None = None, **extra: object):
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    made = logging.LogRecord("gateway.test", logging.ERROR, __file__, 1, message, args, exc_info)
    made.__dict__.update(extra)
    return made


def raised(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_text_lines_cannot_be_forged(value: str) -> None:
    line = TextFormatter().format(
        record("operation %s", value, exc=raised(value), event=value, **{value: 1})
    )
    first, *traceback = line.split("\n")
    # One record line: the value shows escaped, never as a line (nor a terminal command).
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" for c in first)
    assert first.count(FORGED) == 3  # in the message, the extra's value and its key
    assert traceback and all(part.startswith("  | ") for part in traceback)
    assert not any(TEXT_RECORD.match(part) for part in traceback)
    # Whatever a reader takes for a line break, only the record line starts a record.
    assert [TEXT_RECORD.match(part) is not None for part in line.splitlines()].count(True) == 1


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_json_lines_cannot_be_forged(value: str) -> None:
    line = JsonFormatter().format(record("operation %s", value, exc=raised(value), event=value))
    assert "\n" not in line and "\r" not in line
    entry = json.loads(line)
    assert (entry["message"], entry["event"]) == (f"operation {value}", value)
    assert entry["exception"].endswith(f"ValueError: {value}")


@pytest.fixture
def text_logs() -> Iterator[io.StringIO]:
    """The gateway's own logging set-up (`configure`), text format, into a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("text", "INFO")
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        root.handlers[:], root.level = saved


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_client_chosen_names_never_start_a_line(
    dataset_url: str, redis_url: str, text_logs: io.StringIO
) -> None:
    """An operation name (logged by persisted-only log-only mode) and a webhook event id."""
    operation = f"Q\n{FORGED}"
    event = orjson.dumps(
        {
            "id": f"evt\n{FORGED}",
            "module": "missions",
            "occurred_at": "2026-11-24T10:00:00Z",
            "cohort_ids": [102],
        }
    )
    settings = settings_for(dataset_url, redis_url, persisted_only_log_only=True)
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        body = {"query": "query Q { me { id } }", "operationName": operation}
        response = await api.http.post("/graphql", json=body, headers=api.auth(DANA))
        assert response.status_code == 400  # no operation of that name
        accepted = await api.http.post("/webhooks/upstream", content=event, headers=signed(event))
        assert accepted.json()["status"] == "accepted"
    lines = text_logs.getvalue().splitlines()
    assert lines and all(TEXT_RECORD.match(line) for line in lines), lines
    assert not any(line.startswith(FORGED) for line in lines)
    assert sum(FORGED in line for line in lines) == 2  # each shown once, escaped
