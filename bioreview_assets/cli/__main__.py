"""`python -m bioreview_assets.cli ...`: the `bioreview` command without its console script."""

import sys

from bioreview_assets.cli.main import main

sys.exit(main())
