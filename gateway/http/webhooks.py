"""POST /webhooks/upstream: signed change events (docs/upstream.md)."""

import hashlib
import hmac
import logging
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from gateway import metrics
from gateway.cache.kv import CacheUnavailable
from gateway.http.request import inbound_request_id
from gateway.http.responses import json_response
from gateway.logs import new_request_id, request_id_var
from gateway.services import Services
from loaders import MODULES
from resolvers.errors import (
    BAD_REQUEST,
    BAD_SIGNATURE,
    PAYLOAD_TOO_LARGE,
    TOO_MANY_IDS,
    UNAVAILABLE,
)
from resolvers.ids import MAX_ID

log = logging.getLogger("gateway.http.webhooks")

SIGNATURE_HEADER = "x-signature"
SIGNATURE_PREFIX = "sha256="


# An id the upstream's INTEGER columns can hold (resolvers/ids.py): anything else is
# refused with the rest of the event, before its id is recorded.
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]


class ChangeEvent(BaseModel):
    """Validated whole (strict: no bool for an int, no string for a list) before the event
    id is recorded, so that a refused event's retry is processed, not dropped."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=200)
    module: str
    occurred_at: datetime = Field(strict=False)
    # Bounded by the body's size here; by GATEWAY_WEBHOOK_MAX_IDS together (TOO_MANY_IDS).
    cohort_ids: list[RowId] = Field(default_factory=list)
    director_ids: list[RowId] = Field(default_factory=list)


def signature(secret: bytes, body: bytes) -> str:
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _error(status: int, code: str, message: str, result: str) -> Response:
    metrics.WEBHOOK_EVENTS.labels(result).inc()
    error = {"code": code, "message": message, "requestId": request_id_var.get()}
    return json_response({"error": error}, status)


async def upstream_event(request: Request) -> Response:
    """Every answer carries the request's id (X-Request-Id, and `requestId` in refusals)."""
    request_id = inbound_request_id(request.headers.get("x-request-id")) or new_request_id()
    request_id_var.set(request_id)
    response = await _handle(request)
    response.headers["X-Request-Id"] = request_id
    return response


async def _handle(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    limit = settings.webhook_max_body_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return _error(413, PAYLOAD_TOO_LARGE, f"Body exceeds {limit} bytes.", "bad_request")
    # Signature first, over the raw bytes, in constant time: nothing unsigned is parsed.
    given = request.headers.get(SIGNATURE_HEADER, "")
    expected = signature(settings.webhook_secret.get_secret_value().encode(), bytes(body))
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        return _error(401, BAD_SIGNATURE, "Missing or bad X-Signature.", "bad_signature")
    try:
        event = ChangeEvent.model_validate_json(bytes(body))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return _error(400, BAD_REQUEST, f"Malformed event: {where}: {first['msg']}", "bad_request")
    if event.module not in MODULES:
        return _error(400, BAD_REQUEST, f"Unknown module {event.module!r}.", "bad_request")
    max_ids = settings.webhook_max_ids
    if len(event.cohort_ids) + len(event.director_ids) > max_ids:
        message = f"An event names at most {max_ids} ids; send several events."
        return _error(413, TOO_MANY_IDS, message, "bad_request")

    try:
        first_time = await services.kv.set_nx(
            services.cache.keys.event(event.id) if services.cache else event.id,
            b"1",
            settings.event_dedupe_ttl_s,
        )
    except CacheUnavailable:
        return _error(503, UNAVAILABLE, "Cannot record the event now; retry later.", "unavailable")
    if not first_time:
        metrics.WEBHOOK_EVENTS.labels("duplicate").inc()
        return json_response({"status": "duplicate", "id": event.id}, 202)

    refresher = services.refresher
    assert refresher is not None
    try:
        # Directors (scope and role changes) first; a cohort's refresh fans out to every
        # director whose scope holds it (gateway/refresh/pending.py).
        await refresher.refresh_event(
            event.id, event.module, sorted(set(event.cohort_ids)), sorted(set(event.director_ids))
        )
    except Exception:
        # Forget the id so the sender's retry is processed.
        await services.kv.delete(
            services.cache.keys.event(event.id) if services.cache else event.id
        )
        log.exception("could not enqueue refreshes for event %s", event.id)
        return _error(503, UNAVAILABLE, "Cannot enqueue refreshes now; retry later.", "unavailable")
    metrics.WEBHOOK_EVENTS.labels("accepted").inc()
    log.info(
        "upstream event accepted",
        extra={
            "event": event.id,
            "upstream_module": event.module,
            "cohorts": event.cohort_ids,
            "directors": event.director_ids,
        },
    )
    return json_response(
        {
            "status": "accepted",
            "id": event.id,
            "cohorts": sorted(set(event.cohort_ids)),
            "directors": sorted(set(event.director_ids)),
        },
        202,
    )
