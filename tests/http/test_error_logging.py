"""Expected GraphQL errors are answers, not log noise; internal errors keep their traceback."""

import logging

import pytest
from graphql import GraphQLError

from resolvers.schema import build_schema
from tests.support.dataset import DANA, NOW
from tests.support.gateway import settings_for
from tests.support.gateway_client import fixed_clock, gateway_client

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def test_expected_errors_are_not_logged_as_errors(
    dataset_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(dataset_url, None, cache_enabled=False)
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        with caplog.at_level(logging.DEBUG):
            not_found = await api.post("{ cohort(id: 103) { id } }", user=DANA)
            invalid = await api.post("{ cohort(id: 101) { nope } }", user=DANA)
    assert not_found.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert invalid.json()["errors"][0]["message"].startswith("Cannot query field 'nope'")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    debug = [r.getMessage() for r in caplog.records if r.name == "resolvers.schema"]
    # (Validation errors are answered before execution, by the endpoint: not logged.)
    assert debug == ["graphql error: Cohort 103 not found"]


def test_internal_errors_are_logged_with_their_traceback(
    caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    try:
        raise RuntimeError("figure failed")
    except RuntimeError as exc:
        error = GraphQLError("figure failed", original_error=exc)
    with caplog.at_level(logging.DEBUG):
        build_schema().process_errors([error])
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "strawberry.execution"
    assert record.exc_info is not None and record.exc_info[1] is error.original_error
