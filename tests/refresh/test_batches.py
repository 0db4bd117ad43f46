"""How a cycle's phases are cut into batches (gateway/refresh/cycle.py `tapered`)."""

from gateway.refresh.dispatch import TAPER_FLOOR, TAPER_RUNNERS, tapered


def test_bench_scale_cohorts_are_cut_full_then_shrinking() -> None:
    sizes = [len(batch) for batch in tapered(list(range(2500)), 125)]
    # Full while an eighth of what is left is at least 125 (1,000 left), then an eighth
    # of what is left, down to the floor of 125 // 8 = 15.
    assert sizes == [125] * 13 + [
        110, 96, 84, 74, 64, 56, 49, 43, 38, 33, 29, 25, 22, 19, 17, 15, 15, 15, 15, 15,
        15, 15, 11,
    ]  # fmt: skip
    assert (TAPER_RUNNERS, TAPER_FLOOR) == (8, 8)


def test_every_item_once_in_order_none_over_the_size() -> None:
    for count in (0, 1, 7, 49, 50, 51, 501, 2004, 25_003):
        for size in (1, 2, 50, 125, 250):
            batches = tapered(list(range(count)), size)
            assert [i for batch in batches for i in batch] == list(range(count))
            assert all(1 <= len(batch) <= size for batch in batches)
            # Each batch holds at most an eighth of what is left, or the floor.
            start = 0
            for batch in batches:
                left = count - start
                assert len(batch) <= max(size // TAPER_FLOOR, 1, -(-left // TAPER_RUNNERS))
                start += len(batch)


def test_a_phase_smaller_than_the_runners_is_spread_over_them() -> None:
    assert [len(b) for b in tapered(list(range(501)), 250)] == [
        63, 55, 48, 42, 37, 32, 31, 31, 31, 31, 31, 31, 31, 7,
    ]  # fmt: skip
    assert tapered([1, 2, 3], 50) == [[1, 2, 3]]  # the floor: 50 // 8 = 6
    assert tapered([1, 2, 3], 8) == [[1], [2], [3]]
