"""`python -m exporter.simulator`: the standalone simulator."""

import sys

from exporter.simulator import main

sys.exit(main())
