"""On-demand refresh: the requestRefresh mutation."""

import strawberry

from resolvers.caller import DASHBOARD_ROLES, Caller
from resolvers.context import Context
from resolvers.errors import RATE_LIMITED, SERVICE_UNAVAILABLE, bad_input, coded, not_found


@strawberry.type(description="An accepted refresh request; the refresh runs in the background.")
class RefreshRequest:
    accepted: bool = strawberry.field(description="True: the refresh is queued or running.")
    target: str = strawberry.field(
        description="What will be refreshed: cohort:<id> or director:<id>."
    )


@strawberry.type(description="Ask for fresher figures.")
class Mutation:
    @strawberry.mutation(
        description=(
            "Refresh one cohort (and the summaries of its directors) or one director's scope "
            "and summary. Scoped like reads: a cohort in your scope, yourself, or anyone for "
            "an admin. Rate-limited per caller (RATE_LIMITED)."
        )
    )
    async def request_refresh(
        self,
        info: strawberry.Info[Context, None],
        cohort_id: int | None = None,
        director_id: int | None = None,
    ) -> RefreshRequest:
        ctx = info.context
        caller = ctx.caller
        if (cohort_id is None) == (director_id is None):
            raise bad_input("Give exactly one of cohortId and directorId.")
        if ctx.refresh is None:
            raise coded("Refresh is not available.", SERVICE_UNAVAILABLE)
        dashboard: Caller | None = None
        if cohort_id is not None:
            if cohort_id not in set(await ctx.source.scope(caller)):
                raise not_found("Cohort", cohort_id)
        else:
            assert director_id is not None
            if not caller.may_see_director(director_id):
                raise not_found("Director", director_id)
            row = await ctx.source.user(director_id)
            if row is None or row.role not in DASHBOARD_ROLES:
                raise not_found("Director", director_id)
            # That user's dashboard as they see it themselves (an admin's is every cohort).
            dashboard = Caller(director_id, row.role)
        if not await ctx.refresh.allow(caller.user_id):
            raise coded("Too many refresh requests; try again in a minute.", RATE_LIMITED)
        if dashboard is None:
            assert cohort_id is not None
            await ctx.refresh.cohort(cohort_id)
            return RefreshRequest(accepted=True, target=f"cohort:{cohort_id}")
        await ctx.refresh.director(dashboard)
        return RefreshRequest(accepted=True, target=f"director:{director_id}")
