"""``diag agent``: the daemon (composition root, HTTP routes, schedules). A front door."""
