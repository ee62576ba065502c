"""A KB proposal the knowledge base would refuse is answered 422 and never written (the API is a front door too).

Found by the schemathesis run of test_api_hostile: a typical entry with empty instructions was written to the
proposed directory, and from then on every ``GET /api/v1/kb`` answered 422 for that file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from diag.api.incidents import IncidentError, Incidents
from diag.incidents.engine import Verdict
from diag.incidents.service import IncidentService
from diag.incidents.settings import from_mapping
from diag.journal import open_journal
from diag.model import Finding


def test_a_typical_proposal_without_instructions_is_422_and_not_written(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    svc = IncidentService(from_mapping({"open_after": 0, "close_after": 0}, tmp_path), {}, clock=lambda: now[0])
    try:
        f = Finding("disk_full", "critical", "/data is 99% full", "/data", host="web-1")
        svc.engine.ingest("alertmanager", [f])
        now[0] += 1
        assert svc.engine.resolve("alertmanager", f.fingerprint, lambda: Verdict(True, "gone")).action == "resolved"
        iid = svc.store.query(["resolved"], limit=1)[0].id
        api = Incidents(svc, tmp_path, {}, open_journal(tmp_path), None)
        with pytest.raises(IncidentError) as e:
            api.propose(iid, "token:t", "", "", "", True, "")
        assert e.value.status == 422 and "a typical entry needs instructions" in str(e.value)
        assert not list(api.proposed_dir.glob("*.yaml"))
        before = len(api.kb())  # the KB still lists
        entry = api.propose(iid, "token:t", "Disk full", "", "free the disk", True, "")
        assert entry["proposed"] is True and len(api.kb()) == before + 1
    finally:
        svc.close()
