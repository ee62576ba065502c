"""The configuration archive: running configurations of network devices and chosen files of hosts, fetched on a
schedule, masked of secrets and kept as versions in the data directory, with diffs and "what changed shortly
before this fault" for the incident engine (docs/config-archive.md).

``store`` keeps the versions, ``redact`` masks secrets, ``fetch`` collects (SSH for host files, the network
device drivers for running configurations), ``settings`` reads ``agent.archive``, ``schedule`` runs it in the
agent, ``cli`` is ``diag config``. Only ``store`` and ``redact`` are imported by the API users need
(:func:`diag.archive.store.Archive.changes_before`), so the incident engine does not pull in paramiko.
"""
