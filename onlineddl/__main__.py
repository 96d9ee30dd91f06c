"""`python -m onlineddl`."""

import sys

from onlineddl.cli import main

sys.exit(main())
