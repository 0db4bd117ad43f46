"""Ids that come from outside (a token's subject, a webhook's event, a cursor): decimal
digits only, no sign, no leading zero, no other script's digits, and within the range of
the upstream's INTEGER id columns (32-bit in PostgreSQL, as GraphQL's Int), so that no id
reaches a statement the database would refuse."""

import re

MAX_ID = 2**31 - 1
_ID = re.compile(r"[1-9][0-9]{0,18}")


def parse_id(text: object) -> int | None:
    """The id written in `text`, or None when it is not one."""
    if not isinstance(text, str) or _ID.fullmatch(text) is None:
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def is_id(value: object) -> bool:
    """An int (not a bool) that may name a row."""
    return type(value) is int and 1 <= value <= MAX_ID
