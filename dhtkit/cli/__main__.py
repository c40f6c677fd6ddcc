"""``python -m dhtkit.cli``: the ``dhtkit`` command."""

import sys

from dhtkit.cli.run import main

sys.exit(main())
