"""TCP port checks: is the port open, or refused, filtered (timeout) or unreachable."""

from __future__ import annotations

import errno
import os
import socket
import time
from dataclasses import asdict, dataclass

from diag.model import Evidence, Result
from diag.network.reach.common import PortState, check_port, check_positive, resolve


def tcp_connect(address: str, port: int, timeout: float) -> tuple[PortState, float, str]:
    """(state, seconds, error text) of one TCP connect: open, refused (RST), timeout (silence), unreachable (ICMP)."""
    start = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open", time.monotonic() - start, ""
    except ConnectionRefusedError as e:
        return "refused", time.monotonic() - start, str(e)
    except TimeoutError:
        return "timeout", time.monotonic() - start, f"no answer within {timeout:g} s"
    except OSError as e:
        state: PortState = "unreachable" if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "error"
        return state, time.monotonic() - start, os.strerror(e.errno) if e.errno else str(e)


@dataclass(slots=True)
class PortCheck:
    target: str
    port: int
    state: PortState
    seconds: float
    error: str = ""


def port_check(target: str, port: int, timeout: float = 3.0) -> PortCheck:
    check_port(port)
    check_positive(timeout, "timeout")
    state, secs, err = tcp_connect(resolve(target), port, timeout)
    return PortCheck(target, port, state, secs, err)


def port_result(pc: PortCheck) -> Result:
    """Connect time when open; a critical finding when refused, filtered (timeout) or unreachable."""
    r = Result()
    if pc.state == "open":
        r.metric("diag_reach_tcp_connect_seconds", "Time to complete a TCP connect.", labels=("target", "port")).add(
            pc.seconds, pc.target, str(pc.port)
        )
    r.metric("diag_reach_up", "1 when the check got an answer from the target.", labels=("target", "check")).add(
        1.0 if pc.state == "open" else 0.0, pc.target, f"tcp:{pc.port}"
    )
    if pc.state != "open":
        why = {
            "refused": "connection refused (the host answers; nothing listens)",
            "timeout": "no answer (filtered or dropped on the path)",
            "unreachable": f"unreachable ({pc.error})",
            "error": pc.error,
        }[pc.state]
        r.find(
            "reach_tcp_port",
            "critical",
            f"{pc.target}:{pc.port}: {why}",
            f"{pc.target}:{pc.port}",
            f"port_{pc.state}",
            [
                Evidence(
                    "metric", f"tcp connect {pc.target}:{pc.port}", f"{pc.state} after {pc.seconds:.3f} s", asdict(pc)
                )
            ],
        )
    return r
