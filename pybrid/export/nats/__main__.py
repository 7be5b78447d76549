"""``python -m pybrid.export.nats``: the NATS bridge (:mod:`pybrid.export.nats.cli`)."""

import sys

from pybrid.export.nats.cli import main

sys.exit(main())
