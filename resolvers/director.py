"""Director, their summary, and their paginated, filterable cohort list."""

from enum import Enum
from typing import Annotated, Any

import strawberry

from resolvers import rows
from resolvers.caller import Caller
from resolvers.cohort import (
    Alert,
    AlertCode,
    Cohort,
    CohortMode,
    CohortStatus,
    Seats,
    stale_of,
)
from resolvers.context import Context
from resolvers.errors import upstream_unavailable
from resolvers.pagination import DEFAULT_PAGE_SIZE, check_first, encode_cursor, page
from resolvers.projection import NotProjected, projects
from resolvers.scalars import DateTime, SafeInt
from resolvers.subtrees import DEFAULT_SUMMARY_ALERTS, MAX_SUMMARY_ALERTS


@strawberry.type(description="Alert counts by severity.")
class AlertCounts:
    critical: SafeInt = strawberry.field(description="Alerts with severity critical.")
    warning: SafeInt = strawberry.field(description="Alerts with severity warning.")


@strawberry.type(description="How many alerts carry one code.")
class AlertCodeCount:
    code: AlertCode = strawberry.field(description="Alert code.")
    count: int = strawberry.field(description="Alerts with this code.")


def _first_alerts(summary: dict[str, Any], first: int) -> list[dict[str, Any]]:
    if not 1 <= first <= MAX_SUMMARY_ALERTS:
        raise NotProjected  # the ordinary way: it says what is wrong
    return summary["alerts"][:first]  # type: ignore[no-any-return]


@strawberry.type(
    description=(
        "Pooled over the cohorts in the director's scope (sums of numerators and "
        "denominators, never an average of cohort averages)."
    )
)
class DirectorSummary:
    total_cohorts: int = strawberry.field(description="Cohorts in scope, any status.")
    active_cohorts: int = strawberry.field(description="Running cohorts in scope.")
    active_programs: int = strawberry.field(
        description="Distinct programs with status active that have a running cohort in scope."
    )
    seats: Seats = strawberry.field(description="Seats pooled over running cohorts.")
    average_readiness: float | None = strawberry.field(
        description=(
            "Mean of the latest scores of all scored seated learners of running cohorts "
            "(a learner seated in two cohorts counts once per cohort)."
        )
    )
    completion_rate: float | None = strawberry.field(
        description="Pooled over closed cohorts: completed / (enrolled − withdrawn)."
    )
    mentor_coverage: float | None = strawberry.field(
        description="Pooled over running cohorts: covered active learners / active learners."
    )
    session_completion_rate: float | None = strawberry.field(
        description="Pooled over running cohorts: completed past sessions / past sessions."
    )
    alert_counts: AlertCounts = strawberry.field(description="Alerts by severity.")
    alerts_by_code: list[AlertCodeCount] = strawberry.field(
        description="Alerts by code, codes in alphabetical order; codes with none are left out."
    )
    computed_at: DateTime = strawberry.field(
        description="When this summary was computed; its figures are as of this instant."
    )

    @strawberry.field(
        description=(
            f"Alerts of running cohorts, critical first, then by cohort id, then code: the "
            f"first `first` of them (default {DEFAULT_SUMMARY_ALERTS}, at most "
            f"{MAX_SUMMARY_ALERTS}); alertCounts and alertsByCode count them all."
        )
    )
    @projects(lambda root, context, first: _first_alerts(root, first))
    def alerts(
        self,
        first: Annotated[
            int,
            strawberry.argument(description=f"How many, 1 to {MAX_SUMMARY_ALERTS}."),
        ] = DEFAULT_SUMMARY_ALERTS,
    ) -> list[Alert]:
        check_first(first, MAX_SUMMARY_ALERTS)
        return self["alerts"][:first]  # type: ignore[index,no-any-return]

    @strawberry.field(
        description=(
            "True when computedAt is older than the refresh interval plus its grace, or when "
            "this is an older copy because an upstream module is unavailable."
        )
    )
    @projects(stale_of)
    def stale(self, info: strawberry.Info[Context, None]) -> bool:
        return info.context.is_stale(self)  # type: ignore[arg-type]


@strawberry.enum(description="Sort field of a cohort list.")
class CohortOrderField(Enum):
    START_DATE = "start_date"
    SEAT_UTILIZATION = "seat_utilization"
    READINESS = "readiness"
    NAME = "name"


@strawberry.enum(description="Sort direction.")
class OrderDirection(Enum):
    ASC = "asc"
    DESC = "desc"


@strawberry.input(description="Cohort list order; ties are broken by cohort id.")
class CohortOrder:
    field: CohortOrderField = strawberry.field(
        default=CohortOrderField.START_DATE, description="Sort field."
    )
    direction: OrderDirection = strawberry.field(
        default=OrderDirection.ASC,
        description="Sort direction; cohorts whose sort figure is null come last either way.",
    )


@strawberry.input(description="Cohort list filter; all given conditions must hold.")
class CohortFilter:
    status: list[CohortStatus] | None = strawberry.field(
        default=None, description="Any of these statuses."
    )
    mode: list[CohortMode] | None = strawberry.field(
        default=None, description="Any of these modes."
    )
    program_id: int | None = strawberry.field(default=None, description="Cohorts of this program.")
    track_id: int | None = strawberry.field(default=None, description="Cohorts of this track.")
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of the cohort name."
    )


@strawberry.type(description="Pagination state.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="More cohorts after endCursor.")
    has_previous_page: bool = strawberry.field(description="Cohorts before startCursor.")
    start_cursor: str | None = strawberry.field(description="Cursor of the first edge.")
    end_cursor: str | None = strawberry.field(description="Cursor of the last edge.")


@strawberry.type(description="A cohort and its cursor.")
class CohortEdge:
    cursor: str = strawberry.field(description="Opaque cursor for `after`.")
    node: Cohort = strawberry.field(description="The cohort.")


@strawberry.type(description="A page of cohorts.")
class CohortConnection:
    edges: list[CohortEdge] = strawberry.field(description="The cohorts of this page.")
    page_info: PageInfo = strawberry.field(description="Pagination state.")
    total_count: int = strawberry.field(description="Cohorts matching the filter, all pages.")


def _matches(c: dict[str, Any], f: CohortFilter | None) -> bool:
    if f is None:
        return True
    if f.status is not None and c["status"] not in {s.value for s in f.status}:
        return False
    if f.mode is not None and c["mode"] not in {m.value for m in f.mode}:
        return False
    if f.program_id is not None and c["program"]["id"] != f.program_id:
        return False
    if f.track_id is not None and c["track"]["id"] != f.track_id:
        return False
    return not (f.search and f.search.casefold() not in c["name"].casefold())


def _sort_value(c: dict[str, Any], field: CohortOrderField) -> Any:
    if field is CohortOrderField.START_DATE:
        return c["start_date"]
    if field is CohortOrderField.NAME:
        return c["name"]
    if field is CohortOrderField.SEAT_UTILIZATION:
        return c["seats"]["utilization"]
    return c["readiness"]["average"]


def order_key(field: CohortOrderField, descending: bool):  # type: ignore[no-untyped-def]
    """[present, value, id]: nulls sort last in both directions."""
    empty: Any = "" if field in (CohortOrderField.START_DATE, CohortOrderField.NAME) else 0.0

    def key(c: dict[str, Any]) -> list[Any]:
        value = _sort_value(c, field)
        present = value is not None
        flag = (1 if present else 0) if descending else (0 if present else 1)
        return [flag, value if present else empty, c["id"]]

    return key


async def cohort_connection(
    info: strawberry.Info[Context, None],
    director: Caller,
    first: int,
    after: str | None,
    filter: CohortFilter | None,
    order_by: CohortOrder | None,
) -> CohortConnection:
    check_first(first)
    order_by = order_by or CohortOrder()
    source = info.context.source
    ids = await source.scope(director)
    descending = order_by.direction is OrderDirection.DESC
    order_name = f"{order_by.field.value}:{order_by.direction.value}"
    indexed = await _indexed_page(source, director, ids, first, after, filter, order_by)
    if indexed is not None:
        pairs, has_next, has_prev, total = indexed
    else:
        # No index for this scope, or one that disagrees with a subtree of the page:
        # every subtree in scope is read, sorted and filtered.
        subtrees = await source.cohorts(ids)
        matching = [c for c in subtrees.values() if _matches(c, filter)]
        key = order_key(order_by.field, descending)
        matching.sort(key=key, reverse=descending)
        chunk, has_next, has_prev = page(
            matching, key, order=order_name, descending=descending, first=first, after=after
        )
        pairs = [(key(c), c) for c in chunk]
        total = len(matching)
    edges = [CohortEdge(cursor=encode_cursor(order_name, k), node=c) for k, c in pairs]  # type: ignore[arg-type]
    return CohortConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=has_prev,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=total,
    )


async def _indexed_page(
    source: Any,
    director: Caller,
    ids: list[int],
    first: int,
    after: str | None,
    filter: CohortFilter | None,
    order_by: CohortOrder,
) -> tuple[list[tuple[list[Any], dict[str, Any]]], bool, bool, int] | None:
    """The page cut from the scope's list index, with the page's subtrees alone; None
    when the index is missing, is not of this scope, or disagrees with a page subtree."""
    entry = await source.list_index(director)
    if entry is None:
        return None
    index = rows.Index(entry)
    if index.ids != ids:
        return None  # written for another scope than the one read: never shown
    field = order_by.field.value
    descending = order_by.direction is OrderDirection.DESC
    matching = index.ordered(field, descending)
    if filter is not None:
        matching = index.matching(
            matching, filter.status, filter.mode, filter.program_id, filter.track_id, filter.search
        )
    key = index.sort_key(field, descending)
    order_name = f"{field}:{order_by.direction.value}"
    chunk, has_next, has_prev = page(
        matching, key, order=order_name, descending=descending, first=first, after=after
    )
    ids_of_page = [index.ids[i] for i in chunk]
    subtrees = await source.cohorts(ids_of_page)
    pairs = []
    for i, cohort_id in zip(chunk, ids_of_page, strict=True):
        subtree = subtrees.get(cohort_id)
        if subtree is None or rows.list_row(subtree) != index.row(i):
            return None
        pairs.append((key(i), subtree))
    return pairs, has_next, has_prev, len(matching)


@strawberry.type(description="A program director (or an admin looking at their own dashboard).")
class Director:
    id: int = strawberry.field(description="User id.")
    name: str = strawberry.field(description="Name.")
    email: str = strawberry.field(description="Email.")
    role: strawberry.Private[str]

    @property
    def as_caller(self) -> Caller:
        """This director's dashboard is what they would see themselves."""
        return Caller(self.id, self.role)

    @strawberry.field(
        description=(
            "Figures pooled over the cohorts in this director's scope. Null only when an "
            "upstream module is unavailable and no summary is cached."
        )
    )
    async def summary(self, info: strawberry.Info[Context, None]) -> DirectorSummary | None:
        summary = await info.context.source.summary(self.as_caller)
        unavailable = summary.get("unavailable")
        if unavailable:
            module = next(iter(unavailable.values()))
            info.context.deferred_errors.append(upstream_unavailable(module, info.path.as_list()))
        return summary  # type: ignore[return-value]

    @strawberry.field(
        description=(
            "Cohorts in this director's scope (an admin's scope is every cohort), "
            "filtered, ordered and paginated by cursor."
        )
    )
    async def cohorts(
        self,
        info: strawberry.Info[Context, None],
        first: Annotated[
            int, strawberry.argument(description="Page size, 1 to 100.")
        ] = DEFAULT_PAGE_SIZE,
        after: Annotated[
            str | None, strawberry.argument(description="Cursor to start after.")
        ] = None,
        filter: CohortFilter | None = None,
        order_by: CohortOrder | None = None,
    ) -> CohortConnection:
        return await cohort_connection(info, self.as_caller, first, after, filter, order_by)


@strawberry.type(description="A page of directors.")
class DirectorConnection:
    nodes: list[Director] = strawberry.field(description="Directors of this page, by id.")
    end_cursor: str | None = strawberry.field(description="Cursor for the next page.")
    has_next_page: bool = strawberry.field(description="More directors after endCursor.")
