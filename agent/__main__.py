"""``python -m agent``: the same as the ``firstwatch`` command."""

import sys

from agent.cli import main

sys.exit(main())
