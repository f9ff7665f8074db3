"""``python -m agent``: the same as the ``firstwatch`` command."""

import sys

from agent.cli.main import main

sys.exit(main())
