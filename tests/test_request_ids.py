"""Request ids: unique, 32 hex digits, distinct between processes."""

import re
import subprocess
import sys

from gateway.logs import new_request_id


def test_request_ids_are_unique_hex() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_each_process_has_its_own_prefix() -> None:
    code = "from gateway.logs import new_request_id; print(new_request_id())"
    first, second = (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    )
    # Both are their process's first id: only the per-process prefix tells them apart.
    assert first[16:] == second[16:] == f"{1:016x}"
    assert first[:16] != second[:16]
