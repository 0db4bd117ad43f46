"""Milestones: upcoming and overdue."""

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any


def milestones(rows: Sequence[Any], today: date, horizon_days: int) -> dict[str, Any]:
    open_rows = sorted(
        (m for m in rows if m.completed_at is None), key=lambda m: (m.due_date, m.id)
    )
    horizon = today + timedelta(days=horizon_days)

    def view(m: Any) -> dict[str, Any]:
        return {"id": m.id, "title": m.title, "due_date": m.due_date.isoformat()}

    return {
        "upcoming": [view(m) for m in open_rows if today <= m.due_date <= horizon],
        "overdue": [view(m) for m in open_rows if m.due_date < today],
    }
