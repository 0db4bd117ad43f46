"""Opaque keyset cursors over an in-memory ordered list.

A cursor encodes the sort key of the last item seen, so a page stays correct when
items before it change; a cursor made for another order is rejected.
"""

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from resolvers.errors import bad_input

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def check_first(first: int, maximum: int = MAX_PAGE_SIZE) -> int:
    if not 1 <= first <= maximum:
        raise bad_input(f"`first` must be between 1 and {maximum}, got {first}.")
    return first


def encode_cursor(order: str, key: Sequence[Any]) -> str:
    raw = orjson.dumps([order, list(key)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        cursor_order, key = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise bad_input("Malformed cursor.") from None
    if cursor_order != order or not isinstance(key, list):
        raise bad_input("Cursor does not belong to this ordering.")
    return key


def page(
    items: Sequence[T],
    key: Callable[[T], list[Any]],
    *,
    order: str,
    descending: bool,
    first: int,
    after: str | None,
) -> tuple[list[T], bool, bool]:
    """Items after the cursor: (page, has_next, has_previous). `items` must be sorted by key."""
    start = 0
    if after is not None:
        ck = decode_cursor(after, order)
        try:
            if descending:
                start = next((i for i, it in enumerate(items) if key(it) < ck), len(items))
            else:
                start = next((i for i, it in enumerate(items) if key(it) > ck), len(items))
        except TypeError:
            raise bad_input("Malformed cursor.") from None
    chunk = list(items[start : start + first])
    return chunk, start + first < len(items), start > 0
