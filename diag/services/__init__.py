"""Use cases, each written once: run a check (:mod:`diag.services.check`) and where it runs (:mod:`.backends`).

Front doors (``diag.cli``, ``diag.api``, ``diag.agent``) and receivers call these; they never wire the runner,
the journal or the incident engine by hand.
"""
