"""Line-1 fixtures shared by the intake tests: real faults on SSH lab hosts, and the site KB and catalogue for them.

The "print service" of a lab host is a real process named ``labprintd`` (a symlink to python3 serving HTTP
on port 8631 of the host's loopback), run as the lab user; the fault "stopped service" is nothing listening there
(lab hosts share the machine's process table, so the port in the host's network namespace tells them apart).
The "spool" is a small tmpfs of the host filled to 100 %. The site KB entries and catalogue entries below are
what a site would write for them; the test inventory's ``agent.line1`` section points at them (the shipped ones
are switched off so that only these match). See docs/line1.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.labs.lab import LAB_USER, Lab

SERVICE = "labprintd"
PORT = 8631


def install_service(lab: Lab) -> Path:
    """The service binary (a symlink named labprintd, so pgrep -x finds it); returns its directory."""
    bindir = lab.dir / "bin"
    bindir.mkdir(exist_ok=True)
    bindir.chmod(0o755)
    link = bindir / SERVICE
    if not link.exists():
        link.symlink_to("/usr/bin/python3")
    return bindir


def start_service(lab: Lab, host: str) -> None:
    bindir = install_service(lab)
    lab.exec(host, ["runuser", "-u", LAB_USER, "--", "setsid", "-f", "sh", "-c",
                    f"exec {bindir}/{SERVICE} -m http.server {PORT} --bind 127.0.0.1 >/dev/null 2>&1 </dev/null"])
    _wait_listening(lab, host, SERVICE)


def _wait_listening(lab: Lab, host: str, name: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while not service_running(lab, host):  # python takes a moment to listen on a loaded machine
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} on {host} does not listen on {PORT}")
        time.sleep(0.1)


def start_stray(lab: Lab, host: str, name: str = "labstray") -> None:
    """The fault "a process holding the port": another program listens on the service's port."""
    bindir = install_service(lab)
    link = bindir / name
    if not link.exists():
        link.symlink_to("/usr/bin/python3")
    lab.exec(host, ["runuser", "-u", LAB_USER, "--", "setsid", "-f", "sh", "-c",
                    f"exec {link} -m http.server {PORT} --bind 127.0.0.1 >/dev/null 2>&1 </dev/null"])
    _wait_listening(lab, host, name)


def stop_service(lab: Lab, host: str) -> None:
    """Kill the service of this host (the listener in its network namespace; process ids are machine-wide)."""
    import re
    import time

    deadline = time.monotonic() + 15
    while service_running(lab, host) and time.monotonic() < deadline:
        out = lab.exec(host, ["ss", "-Hltnp", f"sport = :{PORT}"], check=False).stdout
        for pid in re.findall(r"pid=(\d+)", out):
            lab.exec(host, ["kill", pid], check=False)
        time.sleep(0.1)


def service_running(lab: Lab, host: str) -> bool:
    """Something listens on the service's port in this host (the namespace is what tells hosts apart)."""
    return bool(lab.exec(host, ["ss", "-Hltn", f"sport = :{PORT}"], check=False).stdout.strip())


def write_kb(path: Path, spool: str) -> Path:
    """The site's KB entries for the two lab faults (the shipped KB is switched off in the tests)."""
    path.mkdir(parents=True, exist_ok=True)
    entries = [
        {"id": "lab-printing-stopped", "title": "Printing does not work because the print service is stopped",
         "match": {"checks": ["port_not_listening"], "evidence": [SERVICE]},
         "cause": "The print service is not running.", "typical": True, "line": "L1", "priority": "high",
         "instructions": "Start the print service again (standard change lab-restart-printd).", "verified": True,
         "intake": {"signatures": [r"не\s+печата", r"принтер\s+не\s+работает", r"can'?t\s+print",
                                   r"printer\s+(is\s+)?not\s+working"],
                    "playbook": "service-down", "vars": {"service": SERVICE, "port": PORT},
                    "change": "lab-restart-printd", "params": {"service": SERVICE, "port": PORT},
                    "answer": "The print service on {host} had stopped; it was started again. "
                              "Please print your document again."}},
        {"id": "lab-spool-full", "title": "Saving fails because the spool filesystem is full",
         "match": {"checks": ["disk_full"], "evidence": [spool]},
         "cause": "Stale files filled the spool filesystem.", "typical": True, "line": "L1", "priority": "normal",
         "instructions": "Clear the spool (standard change lab-clear-spool).", "verified": True,
         "intake": {"signatures": [r"нет\s+места", r"no\s+space\s+left", r"disk\s+(is\s+)?full",
                                   r"cannot\s+save|can'?t\s+save"],
                    "playbook": "disk-full", "vars": {"path": spool, "scan_seconds": 5},
                    "change": "lab-clear-spool", "params": {"dir": spool},
                    "answer": "The spool on {host} was full of stale files; they were removed. "
                              "Please save your work again."}},
    ]
    (path / "site.yaml").write_text(yaml.safe_dump({"entries": entries}, allow_unicode=True, sort_keys=False))
    return path


def write_catalogue(path: Path, bindir: Path, spool: str, *, hosts: list[str], window: dict[str, Any] | None = None,
                    rate_max: int = 5) -> Path:
    """The site's catalogue for the lab faults: scope ``hosts``, one window (default: always)."""
    path.mkdir(parents=True, exist_ok=True)
    windows = [window or {"from": "00:00", "to": "24:00"}]
    listening = "ss -Hltn sport = :{{ port }} | grep -q ."
    pct = "$(df -P {{ dir }} | awk 'NR==2 {sub(/%/, \"\", $5); print $5}')"
    start = f"exec {bindir}/{SERVICE} -m http.server {PORT} --bind 127.0.0.1 >/dev/null 2>&1 </dev/null"
    changes = [
        {"id": "lab-restart-printd", "title": "Start the lab print service again",
         "description": f"Starts {SERVICE} when nothing listens on its port; a failed start is undone.",
         "hosts": hosts, "params": {"service": {"allowed": [SERVICE]}, "port": {"allowed": [PORT]}},
         "precheck": {"run": f"! {listening}"},
         "action": {"run": f"setsid -f sh -c '{start}'"},
         "verify": {"run": f"for i in 1 2 3 4 5 6 7 8 9 10; do {listening} && exit 0; sleep 0.5; done; exit 1"},
         "rollback": {"run": "for p in $(ss -Hltnp sport = :{{ port }} | grep -o 'pid=[0-9]*' | cut -d= -f2); "
                             "do kill $p; done; true"},
         "windows": windows, "rate_limit": {"max": rate_max, "per": "1h"}},
        {"id": "lab-clear-spool", "title": "Remove stale files from the lab spool",
         "description": "Deletes the files in the spool directory; not reversible.",
         "hosts": hosts, "params": {"dir": {"allowed": [spool]}},
         "precheck": {"run": f'test "{pct}" -ge 90'},
         "action": {"run": "find {{ dir }} -xdev -maxdepth 1 -type f -delete"},
         "verify": {"run": f'test "{pct}" -lt 90'},
         "windows": windows, "rate_limit": {"max": rate_max, "per": "1h"}},
    ]
    (path / "site.yaml").write_text(yaml.safe_dump({"changes": changes}, allow_unicode=True, sort_keys=False))
    return path


def write_inventory(lab: Lab, path: Path, data: Path, kb: Path, catalogue: Path, desks: dict[str, Any]) -> Path:
    """The lab's inventory with an ``agent.line1`` section for the given desks."""
    import json

    lab.write_inventory(path)
    line1 = {"interval": 1, "desks": desks, "knowledge": [str(kb)], "shipped_knowledge": False,
             "changes": [str(catalogue)], "shipped_changes": False, "fallback_playbook": "high-load",
             "known_hosts": [str(lab.known_hosts)]}
    with path.open("a") as f:
        f.write("agent:\n")
        f.write(f"  data: {json.dumps(str(data))}\n")
        f.write(f"  line1: {json.dumps(line1)}\n")
    return path


def spool_path(lab: Lab) -> str:
    """One path for every host: each mounts its own tmpfs there, in its own mount namespace."""
    return str(lab.dir / "spool")


def spool_for(lab: Lab, host: str) -> str:
    """Mount the host's spool tmpfs (owned by the lab user so the standard change can clear it)."""
    mnt = lab.mount_tmpfs(host, "2M", spool_path(lab))
    lab.exec(host, ["chown", LAB_USER, str(mnt)])
    lab.dir.chmod(0o755)
    return str(mnt)


def fill_spool(lab: Lab, host: str, spool: str) -> None:
    lab.exec(host, ["runuser", "-u", LAB_USER, "--", "sh", "-c",
                    f"for i in 1 2 3 4; do dd if=/dev/zero of={spool}/job$i bs=1k count=600 2>/dev/null; done; true"])
