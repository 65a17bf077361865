"""`python -m service.cli`: the `mlplab` command without its console script."""

import sys

from service.cli import main

sys.exit(main())
