"""Line-1 automation: tickets filed by people are read, diagnosed and answered; standard changes are applied.

The pieces, one job each: :mod:`~diag.line1.model` (a person's ticket), :mod:`~diag.line1.text` (making ticket
text safe to read), :mod:`~diag.line1.subject` (which host it is about), :mod:`~diag.line1.catalogue` (the
pre-approved standard changes), :mod:`~diag.line1.ledger` (what was done, for the journal, the console and the
report), :mod:`~diag.line1.note` (the plain-language note), :mod:`~diag.line1.settings` (``agent.line1``) and
``intake/`` (Redmine, RT and an IMAP mailbox). The use cases that tie them together live in
:mod:`diag.services.triage` and :mod:`diag.services.standard_change`; docs/line1.md describes it all.
"""
