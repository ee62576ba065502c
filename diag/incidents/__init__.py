"""Incidents: findings become deduplicated, classified, escalated incidents, delivered to a ticket system.

See docs/incidents.md. Modules, one job each:

- :mod:`~diag.incidents.settings` the ``agent.incidents`` section (durations, SLA table, masking, links)
- :mod:`~diag.incidents.store`    SQLite (WAL): incidents, their event journal, the outbox, silences
- :mod:`~diag.incidents.engine`   the lifecycle: damping, occurrences, verifying re-checks, reopen, suppression
- :mod:`~diag.incidents.topology` inventory ``parents``: one incident upstream, the hosts behind it as impact
- :mod:`~diag.incidents.knowledge` the knowledge base: typical/atypical, line, SLA, ranked hypotheses
- :mod:`~diag.incidents.bundle`   the ticket text and its JSON evidence attachment
- :mod:`~diag.incidents.masking`  secrets and personal data masked out of everything that leaves diag
- :mod:`~diag.incidents.sla`      due times and breaches (event, note, escalation, counter)
- :mod:`~diag.incidents.outbox`   the delivery worker: backoff, parking, search-before-create
- :mod:`~diag.incidents.service`  builds all of the above from settings (the agent and the CLI use it)

Nothing here is imported by ``diag agent`` unless ``agent.incidents`` is configured.
"""
