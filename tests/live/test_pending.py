"""How changes not yet read by a subscription merge (gateway/live/watch.py `Pending`)."""

from datetime import UTC, datetime

from gateway.live.watch import Pending

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
SCOPE = {101, 102, 104}


def first_event() -> Pending:
    return Pending({"version": "a"}, (), "2026-11-24T12:00:00Z", NOW, 0.0, first=True)


def resync() -> Pending:
    return Pending({"version": "b"}, SCOPE, "2026-11-24T12:00:00Z", NOW, 5.0, resync=True)


def notice(*cohorts: int) -> Pending:
    return Pending({"version": "c"}, cohorts, "2026-11-24T12:01:00Z", NOW, 7.0)


def test_a_resync_merged_into_a_first_event_names_nothing() -> None:
    # The first subscriber on a replica starts its bus; the subscription's confirmation
    # resyncs the hub while the subscriber has not read its first event yet.
    pending = first_event()
    pending.merge(resync())
    assert (pending.subtree, pending.cohort_ids, pending.resync) == ({"version": "b"}, set(), False)


def test_a_first_event_merged_into_a_resync_names_nothing() -> None:
    # The same two, the other way round: the resync came while the first figures were read.
    pending = resync()
    pending.merge(first_event())
    assert (pending.subtree, pending.cohort_ids, pending.resync) == ({"version": "a"}, set(), False)
    assert pending.first


def test_a_first_event_keeps_the_cohorts_of_a_notice_but_not_a_resyncs() -> None:
    pending = first_event()
    pending.merge(notice(101))
    pending.merge(resync())
    assert (pending.cohort_ids, pending.resync, pending.first) == ({101}, False, True)


def test_a_resync_merged_into_a_notice_names_every_cohort() -> None:
    # Notices may have been missed while the bus was away: every cohort may have changed.
    pending = notice(101)
    pending.merge(resync())
    assert (pending.cohort_ids, pending.resync, pending.published_at) == (SCOPE, False, 5.0)


def test_a_notice_merged_into_a_resync_names_both() -> None:
    pending = resync()
    pending.merge(notice(102))
    assert (pending.subtree, pending.cohort_ids, pending.resync) == ({"version": "c"}, SCOPE, False)
    merged = resync()
    merged.merge(resync())
    assert (merged.cohort_ids, merged.resync) == (SCOPE, True)  # still every cohort


def test_notices_merge_their_cohorts() -> None:
    pending = notice(101)
    pending.merge(notice(104))
    assert (pending.cohort_ids, pending.computed_at) == ({101, 104}, "2026-11-24T12:01:00Z")
