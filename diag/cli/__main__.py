"""``python -m diag.cli``: the same as the ``diag`` command."""

import sys

from diag.cli.main import main

sys.exit(main())
