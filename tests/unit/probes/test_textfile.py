"""textfile: recorded .prom files re-exported with their types; broken files skipped and reported."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from diag.errors import NoData
from diag.exporters.exposition import encode, to_families
from diag.probes.base import Paths
from diag.probes.textfile import TextfileOptions, TextfileProbe

FIX = Path(__file__).parents[2] / "fixtures" / "textfile"


def make(tmp_path: Path, directory: Path | None = None) -> TextfileProbe:
    opts = {"directory": str(directory)} if directory else {}
    return TextfileProbe(msgspec.convert(opts, TextfileOptions), Paths(state=tmp_path / "data" / "state"))


def test_default_directory_is_under_the_data_dir(tmp_path: Path) -> None:
    probe = make(tmp_path)
    assert probe.directory == tmp_path / "data" / "textfile"
    with pytest.raises(NoData, match="does not exist"):
        probe.collect()


def test_good_files_round_trip_with_their_types(tmp_path: Path) -> None:
    r = make(tmp_path, FIX / "good").collect()
    text = encode(to_families(r.metrics)).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["backup_runs"].type == "counter"
    assert fams["backup_duration_seconds"].type == "histogram"
    assert fams["raid_io_latency_seconds"].type == "summary"
    assert fams["custom_untyped_value"].type == "unknown"
    assert fams["diag_textfile_scrape_error"].samples[0].value == 0
    mtimes = {s.labels["file"] for s in fams["diag_textfile_mtime_seconds"].samples}
    assert mtimes == {"backup_job.prom", "raid_controller.prom"}
    # every sample of the files comes out unchanged
    for name in ("backup_job.prom", "raid_controller.prom"):
        for fam in text_string_to_metric_families((FIX / "good" / name).read_text()):
            assert fam.samples == fams[fam.name].samples
            assert fam.documentation == fams[fam.name].documentation
    assert r.findings == []


def test_broken_file_is_skipped_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "tf"
    shutil.copytree(FIX / "good", d)
    shutil.copy(FIX / "broken" / "half_written.prom", d)
    caplog.set_level(logging.WARNING)
    probe = make(tmp_path, d)
    r = probe.collect()
    names = {m.name for m in r.metrics}
    assert {"backup_runs", "raid_controller_battery_ok"} <= names and "app_queue_depth" not in names
    assert next(m for m in r.metrics if m.name == "diag_textfile_scrape_error").samples[0][1] == 1
    [f] = r.findings
    assert f.check == "textfile_invalid" and f.subject == "half_written.prom" and "line 4" in f.summary
    assert any("half_written.prom" in rec.getMessage() and "line 4" in rec.getMessage() for rec in caplog.records)
    caplog.clear()
    probe.collect()
    assert not caplog.records  # the same broken file warns once, not on every run


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("diag_probe_success 1\n", "reserved"),
        ("x 1 1700000000000\n", "timestamp"),
        ("x 1\nx 2\n", "exposed twice"),
    ],
)
def test_refused_content(tmp_path: Path, content: str, reason: str) -> None:
    d = tmp_path / "tf"
    d.mkdir()
    (d / "a.prom").write_text(content)
    (d / "ok.prom").write_text("fine 1\n")
    r = make(tmp_path, d).collect()
    assert reason in r.findings[0].summary
    assert {m.name for m in r.metrics} >= {"fine"}


def test_a_family_split_over_files(tmp_path: Path) -> None:
    d = tmp_path / "tf"
    d.mkdir()
    (d / "a.prom").write_text('# TYPE q gauge\nq{x="1"} 1\n')
    (d / "b.prom").write_text('# TYPE q gauge\nq{x="2"} 2\n')
    (d / "c.prom").write_text('# TYPE q counter\nq_total{x="3"} 3\n')  # same name, other type: refused
    r = make(tmp_path, d).collect()
    q = [m for m in r.metrics if m.name == "q"]
    assert len(q) == 1 and [s[1]["x"] for s in q[0].raw] == ["1", "2"]
    assert [f.subject for f in r.findings] == ["c.prom"]
    encode(to_families(r.metrics))  # one family, valid exposition
