"""On-demand refresh: the requestRefresh mutation."""

import strawberry

from resolvers.context import Context
from resolvers.errors import RATE_LIMITED, bad_input, coded, not_found


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
            raise coded("Refresh is not available.", "SERVICE_UNAVAILABLE")
        if cohort_id is not None:
            if cohort_id not in set(await ctx.source.scope(caller.user_id, caller.role)):
                raise not_found("Cohort", cohort_id)
        else:
            assert director_id is not None
            if not caller.is_admin and director_id != caller.user_id:
                raise not_found("Director", director_id)
            row = await ctx.source.user(director_id)
            if row is None or row.role not in ("director", "admin"):
                raise not_found("Director", director_id)
        if not await ctx.refresh.allow(caller.user_id):
            raise coded("Too many refresh requests; try again in a minute.", RATE_LIMITED)
        if cohort_id is not None:
            await ctx.refresh.cohort(cohort_id)
            return RefreshRequest(accepted=True, target=f"cohort:{cohort_id}")
        assert director_id is not None
        role = "admin" if director_id == caller.user_id and caller.is_admin else "director"
        await ctx.refresh.director(director_id, role)
        return RefreshRequest(accepted=True, target=f"director:{director_id}")
