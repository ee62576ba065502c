"""Write a synthetic inventory of N hosts (default 10,000) in 50 groups behind 200 switches."""

from __future__ import annotations

import sys


def generate(n: int) -> str:
    lines = ["defaults:", "  user: diag", "  port: 22", "groups:"]
    for g in range(50):
        lines += [f"  grp-{g}:", "    tags: [fleet]", f"    site: site-{g % 5}", "    vars: {tier: web}"]
    lines.append("hosts:")
    switches = max(1, n // 50)
    for s in range(switches):
        lines += [
            f"  sw-{s}:",
            f"    address: 10.{s // 250}.{s % 250}.1",
            "    device_type: cisco_ios",
            "    groups: [grp-0]",
        ]
    for i in range(n - switches):
        lines += [
            f"  host-{i:05d}:",
            f"    address: 10.{64 + i // 62500}.{(i // 250) % 250}.{i % 250 + 2}",
            f"    groups: [grp-{i % 50}]",
            f"    parents: [sw-{i % switches}]",
            f"    tags: [rack-{i % 40}]",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(generate(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
