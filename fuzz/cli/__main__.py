"""`python -m kfuzz.cli`: the `kfuzz` command."""

import sys

from kfuzz.cli.app import main

sys.exit(main())
