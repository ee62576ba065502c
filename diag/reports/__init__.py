"""Support-quality reports over the incident store: ``diag report`` (docs/reports.md).

``data`` reads incidents and their journal for a period, ``figures`` computes every figure from them (a pure
function of the rows, so a test can recompute it by hand), ``render`` writes JSON, CSV and HTML with server-side
SVG charts (pygal), and ``cli`` is the command. Nothing here is imported by the agent.
"""
