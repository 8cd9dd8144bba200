"""python -m ipcmon → ipcmon.cli.main."""

import sys

from ipcmon.cli import main

sys.exit(main())
