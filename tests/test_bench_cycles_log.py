"""The bench reads the worker's refresh cycles from its JSON log lines (bench/results.py)."""

import json

from bench.results import parse_cycles


def line(message: str, ts: str, **fields: object) -> str:
    return json.dumps({"message": message, "ts": ts, **fields})


def test_a_cycle_in_phases_is_read_from_its_last_line() -> None:
    text = "\n".join(
        [
            "not json",
            line("prewarmed responses", "2026-11-29T20:30:30+00:00", duration_s=20.0),
            line(
                "refresh cycle done",
                "2026-11-29T20:30:36+00:00",
                duration_s=36.0,
                phases_s={"cohorts": 10.0, "directors": 2.0, "dashboards": 20.0, "answers": 3.5},
            ),  # fmt: skip
            line("prewarmed responses", "2026-11-29T20:35:25+00:00", duration_s=22.0),
            line(
                "refresh cycle done",
                "2026-11-29T20:35:31+00:00",
                duration_s=31.0,
                phases_s={"cohorts": 7.0, "directors": 1.0, "dashboards": 22.0, "answers": 0.0},
            ),  # fmt: skip
        ]
    )
    assert parse_cycles(text) == [
        {
            "start": 1795984200.0,
            "subtrees_s": 12.0,
            "end": 1795984236.0,
            "responses_s": 23.5,
            "started_at": "2026-11-29T20:30:00+00:00",
            "total_s": 36.0,
        },
        {
            "start": 1795984500.0,
            "subtrees_s": 8.0,
            "end": 1795984531.0,
            "responses_s": 22.0,
            "started_at": "2026-11-29T20:35:00+00:00",
            "total_s": 31.0,
        },
    ]


def test_an_older_cycle_pairs_its_subtrees_with_the_answers_after_them() -> None:
    text = "\n".join(
        [
            line("refresh cycle done", "2026-11-29T20:30:10+00:00", duration_s=10.0),
            line("prewarmed responses", "2026-11-29T20:30:15+00:00", duration_s=5.0),
        ]
    )
    [cycle] = parse_cycles(text)
    assert cycle["subtrees_s"] == 10.0
    assert cycle["responses_s"] == 5.0
    assert cycle["total_s"] == 15.0
