"""Scale-out: run checks on many machines through Celery workers with a Redis broker, one scheduler leading.

The in-process thread pool (:class:`diag.distributed.backend.LocalBackend`) stays the default; the Celery
backend shards the same per-host unit of work (:func:`diag.remote.runner.run_host`) across worker processes,
optionally scoped to a site. Nothing here is imported unless scale-out is asked for.
"""
