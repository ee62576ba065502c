"""The agent keys its journal and anchors the head outside it (agent.journal): a real ``diag agent`` journals
refused requests, appends anchors to a file while it runs and when it stops, exports the head in /metrics, and
``diag journal verify --key --anchor`` agrees with all of it (issue 15)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import DIAG, StartAgent, wait_for

pytestmark = pytest.mark.integration


def test_the_agent_keys_the_journal_anchors_its_head_and_exports_it(start_agent: StartAgent, tmp_path: Path) -> None:
    key, anchor = tmp_path / "etc" / "journal.key", tmp_path / "audit" / "anchor.log"
    key.parent.mkdir()
    anchor.parent.mkdir()
    assert subprocess.run([DIAG, "journal", "key", "new", str(key)], capture_output=True, check=False).returncode == 0
    agent = start_agent(
        f"hosts: {{}}\nagent:\n  journal: {{key: 'file:{key}', anchor: '{anchor}', anchor_interval: 1}}\n  api: {{}}\n"
    )
    for _ in range(3):  # wrong tokens on the API: login.failed records
        r = httpx.get(agent.url + "/api/v1/whoami", headers={"Authorization": "Bearer diag_0badc0de_" + "x" * 43})
        assert r.status_code == 401
    data = Path(agent.args[agent.args.index("--data") + 1])

    def anchored() -> int:
        seqs = [int(m) for m in re.findall(r" seq=([0-9]+) ", anchor.read_text())] if anchor.exists() else []
        return max(seqs, default=0)

    wait_for(lambda: anchored() >= 4, timeout=30, what="an anchor of the head (journal.keyed + 3 refusals)")
    m = re.search(r"^diag_journal_head_sequence (\d+)$", agent.metrics(), re.M)
    assert m is not None and int(m.group(1)) >= 4
    assert agent.stop() == 0
    last = anchor.read_text().splitlines()[-1]
    seq = int(re.search(r" seq=([0-9]+) ", last).group(1))  # type: ignore[union-attr]
    v = subprocess.run(
        [DIAG, "journal", "verify", "--data", str(data), "--key", str(key), "--anchor", str(anchor)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert v.returncode == 0, v.stderr
    assert f"head {seq} " in v.stdout and "keyed" in v.stdout
    assert key.read_text().strip() not in (data / "journal.db").read_bytes().decode(errors="replace")
