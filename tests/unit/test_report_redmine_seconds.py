"""Redmine's timestamps have whole seconds: a person's note in the second the incident opened is not 'before' it."""

from __future__ import annotations

from typing import Any

from diag.model import IncidentRow
from diag.reports.redmine import enrich


class RecordedRedmine:
    """Answers the two GETs ``enrich`` makes with what Redmine 5.0 returned (recorded shape)."""

    def _get(self, path: str, what: str, **params: Any) -> dict[str, Any]:
        if path == "/users/current.json":
            return {"user": {"id": 1}}
        return {
            "issue": {
                "id": 7,
                "updated_on": "2026-12-07T04:40:01Z",
                "journals": [
                    {"id": 1, "user": {"id": 1, "name": "diag"}, "created_on": "2026-12-07T04:40:01Z"},
                    {"id": 2, "user": {"id": 5, "name": "Alice Engineer"}, "created_on": "2026-12-07T04:40:01Z"},
                ],
            }
        }


def test_a_note_in_the_opening_second_counts_as_at_the_opening() -> None:
    opened = 1796618401.7  # 2026-12-07T04:40:01.7Z: Redmine writes the note's time as 04:40:01
    row = IncidentRow(1, "h", "disk_full", "/srv", "disk_full", "open", "critical", "typical", "L1", "high",
                      opened, opened, None, None, None, 0, ticket_backend="redmine", ticket_id="7")  # fmt: skip
    assert enrich([row], RecordedRedmine()) == 1
    (ack,) = [e for e in row.events if e.kind == "acknowledged"]
    assert ack.actor == "Alice Engineer"
    assert ack.at == opened  # not 0.7 s before it: a negative time to acknowledge
