"""Who is asking, and the one rule that makes an admin's view different."""

from dataclasses import dataclass

DIRECTOR = "director"
ADMIN = "admin"
# Users with a dashboard; any other role (a learner, a mentor) has none.
DASHBOARD_ROLES = frozenset({DIRECTOR, ADMIN})


@dataclass(frozen=True)
class Caller:
    user_id: int
    role: str  # DIRECTOR or ADMIN

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def scope_id(self) -> str:
        """Whose scope this caller sees: every admin sees every cohort, so all admins share
        one scope and one summary ("admin"); a director has their own (their user id)."""
        return ADMIN if self.is_admin else str(self.user_id)

    def may_see_director(self, director_id: int) -> bool:
        """Admins may open anyone's dashboard; a director only their own."""
        return self.is_admin or director_id == self.user_id
