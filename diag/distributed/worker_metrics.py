"""A worker's own Prometheus metrics: hosts checked by status, time per host, and the worker's liveness."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
HOSTS = Counter(
    "diag_worker_hosts_checked", "Hosts this worker checked, by final host status.", ["status"], registry=REGISTRY
)
SECONDS = Histogram(
    "diag_worker_host_check_seconds",
    "Time this worker spent on one host of a distributed check.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
STARTED = Gauge("diag_worker_start_time_seconds", "When this worker process started (Unix time).", registry=REGISTRY)


def observe(status: str, seconds: float) -> None:
    HOSTS.labels(status).inc()
    SECONDS.observe(seconds)


def serve(host: str, port: int) -> None:
    """Expose the worker's metrics on ``host:port`` (a daemon thread of the worker process)."""
    STARTED.set_to_current_time()
    start_http_server(port, addr=host, registry=REGISTRY)
