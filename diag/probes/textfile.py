"""Custom metrics from ``*.prom`` files in a directory, re-exported as they are (node_exporter's textfile collector).

Cron jobs and scripts drop Prometheus text files there (write to a temp name, then rename). Each file is
parsed with prometheus_client's parser; a file that does not parse is skipped with a warning that names
it and the reason, and ``diag_textfile_scrape_error`` becomes 1, while the other files are still exported.
As in node_exporter, samples with client-side timestamps are refused (the whole file), and a family that
another file already defines with a different type is refused too. Names starting with ``diag_`` or
``process_`` are the agent's own and are refused, since a clash would make the whole scrape invalid.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from diag.errors import NoData
from diag.model import Evidence, Metric, MetricKind, Result
from diag.probes.base import Paths, Probe, ProbeOptions, register
from diag.secrets import mask

log = logging.getLogger(__name__)

RESERVED_PREFIXES = ("diag_", "process_")
KINDS: dict[str, MetricKind] = {
    "counter": "counter",
    "gauge": "gauge",
    "histogram": "histogram",
    "summary": "summary",
    "unknown": "unknown",
    "info": "info",
    "stateset": "stateset",
    "gaugehistogram": "gaugehistogram",
}


class TextfileOptions(ProbeOptions, kw_only=True):
    directory: str = ""  # default: textfile/ in the agent's data directory
    max_file_bytes: int = 16 * 2**20  # a bigger file is refused, so a runaway script cannot bloat the agent


class FileError(Exception):
    """One .prom file cannot be exported; the message says why."""


def _bad_line(text: str) -> str:
    """``line N: `` of the first sample line the parser rejects on its own ("" when no single line is to blame)."""
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                list(text_string_to_metric_families(line + "\n"))
            except Exception:  # same reason as in parse_file: any parser error marks the line
                return f"line {n}: "
    return ""


def parse_file(text: str, seen: dict[str, tuple[str, Metric]], fname: str) -> list[Metric]:
    """Parse one file into pass-through metrics; FileError when any of it is unacceptable.

    ``seen`` maps family names already taken by earlier files to (file, metric): a family may be
    split over files when its type and help agree (node_exporter does the same), its series may not repeat.
    """
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError, IndexError, TypeError...: all mean "broken file"
        raise FileError(f"{_bad_line(text)}{e or type(e).__name__}") from None
    # Everything is checked before anything is kept, so a file that fails half-way leaves no trace.
    staged: dict[str, tuple[Metric, bool, list[tuple[str, dict[str, str], float]], set[tuple[str, Any]]]] = {}
    for fam in families:
        if fam.name.startswith(RESERVED_PREFIXES):
            raise FileError(f"metric {fam.name} uses a prefix reserved for the agent's own metrics")
        kind = KINDS.get(fam.type)
        if kind is None:
            raise FileError(f"metric {fam.name} has unsupported type {fam.type}")
        entry = staged.get(fam.name)
        if entry is None:
            prev = seen.get(fam.name)
            if prev is not None:
                pfile, pm = prev
                if pm.kind != kind or pm.help != fam.documentation:
                    raise FileError(f"metric {fam.name} is already defined in {pfile} with another type or help")
                entry = (pm, False, [], {(n, tuple(sorted(lb.items()))) for n, lb, _ in pm.raw})
            else:
                entry = (Metric(fam.name, fam.documentation, kind), True, [], set())
            staged[fam.name] = entry
        _, _, samples, keys = entry
        for s in fam.samples:
            if s.timestamp is not None:
                raise FileError(f"metric {s.name} has a client-side timestamp, which is not supported")
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in keys:
                raise FileError(f"metric {s.name}{dict(s.labels)} is exposed twice")
            keys.add(key)
            samples.append((s.name, dict(s.labels), float(s.value)))
    out: list[Metric] = []
    for name, (m, new, samples, _) in staged.items():
        m.raw.extend(samples)
        if new:
            out.append(m)
            seen[name] = (fname, m)
    return out


@register
class TextfileProbe(Probe):
    name = "textfile"
    help = "Custom metrics from *.prom files in the textfile directory, exported as they are."
    Options = TextfileOptions

    def __init__(self, options: ProbeOptions, paths: Paths) -> None:
        super().__init__(options, paths)
        assert isinstance(options, TextfileOptions)
        # The data directory is the state directory's parent (``<data>/state``).
        self.directory = Path(options.directory) if options.directory else paths.state.parent / "textfile"
        self._warned: dict[str, str] = {}  # file -> last reason logged, so a broken file warns once

    def collect(self) -> Result:
        assert isinstance(self.options, TextfileOptions)
        if not self.directory.is_dir():
            raise NoData(f"textfile directory {self.directory} does not exist")
        r = Result()
        mtime = r.metric(
            "diag_textfile_mtime_seconds", "Modification time of each exported textfile (Unix time).", labels=("file",)
        )
        error = r.metric("diag_textfile_scrape_error", "Whether a textfile failed to parse and was skipped (1).")
        seen: dict[str, tuple[str, Metric]] = {}
        exported: list[Metric] = []
        failed: list[tuple[str, str]] = []
        for path in sorted(self.directory.glob("*.prom")):
            try:
                st = path.stat()
                if st.st_size > self.options.max_file_bytes:
                    raise FileError(f"{st.st_size} bytes is more than max_file_bytes ({self.options.max_file_bytes})")
                text = path.read_text(encoding="utf-8", errors="replace")
                exported += parse_file(text, seen, path.name)
            except (OSError, FileError) as e:
                # the parser quotes the offending text, which could be anything: mask known secrets
                reason = mask(e.strerror if isinstance(e, OSError) and e.strerror else str(e))
                failed.append((str(path), reason))
                if self._warned.get(str(path)) != reason:
                    log.warning("textfile %s skipped: %s", path, reason)
                    self._warned[str(path)] = reason
                continue
            self._warned.pop(str(path), None)
            mtime.add(st.st_mtime, path.name)
        error.add(1.0 if failed else 0.0)
        r.metrics.extend(exported)
        for file, reason in failed:
            r.find(
                "textfile_invalid",
                "warning",
                f"textfile {Path(file).name} skipped: {reason}",
                subject=Path(file).name,
                cause="textfile_invalid",
                evidence=[Evidence("file", file, reason)],
            )
        return r
