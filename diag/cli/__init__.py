"""The ``diag`` command line: one module per command group, plus the terminal rendering. A front door."""
