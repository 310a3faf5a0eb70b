"""`python -m swamla_tui.bench`: the benchmark script (`bench.run`)."""

import sys

from .run import main

sys.exit(main())
