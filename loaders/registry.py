"""The per-request (or per-job) set of loaders, as typed attributes.

Each attribute is the snake_case of its class name without `Loader`
(`EnrollmentsByCohortIdLoader` → `enrollments_by_cohort_id`); tests/loaders/test_registry.py
checks that every loader class of every module is here under that name."""

import importlib

from sqlalchemy import MetaData

from loaders import MODULES, mentorship, missions, programs, talentscope
from loaders.engines import Upstream


def module_metadata(module: str) -> MetaData:
    """The tables of one upstream module (`loaders/<module>.py`'s `metadata`)."""
    if module not in MODULES:
        raise ValueError(f"unknown upstream module {module!r}")
    metadata: MetaData = importlib.import_module(f"loaders.{module}").metadata
    return metadata


class Loaders:
    """Fresh DataLoaders bound to the running event loop; never share across requests."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        # programs
        self.user_by_id = programs.UserByIdLoader(upstream)
        self.cohort_by_id = programs.CohortByIdLoader(upstream)
        self.cohorts_by_track_id = programs.CohortsByTrackIdLoader(upstream)
        self.track_by_id = programs.TrackByIdLoader(upstream)
        self.program_by_id = programs.ProgramByIdLoader(upstream)
        self.track_ids_by_director_id = programs.TrackIdsByDirectorIdLoader(upstream)
        self.director_ids_by_track_id = programs.DirectorIdsByTrackIdLoader(upstream)
        self.enrollments_by_cohort_id = programs.EnrollmentsByCohortIdLoader(upstream)
        self.milestones_by_cohort_id = programs.MilestonesByCohortIdLoader(upstream)
        # mentorship
        self.mentor_by_id = mentorship.MentorByIdLoader(upstream)
        self.active_mentor_assignments_by_cohort_id = (
            mentorship.ActiveMentorAssignmentsByCohortIdLoader(upstream)
        )
        # talentscope
        self.latest_readiness_scores_by_cohort_id = (
            talentscope.LatestReadinessScoresByCohortIdLoader(upstream)
        )
        # missions
        self.missions_by_cohort_id = missions.MissionsByCohortIdLoader(upstream)
