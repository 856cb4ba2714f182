"""`python -m nanoswarm` is the `nanoswarm` command; torchrun starts training processes this way."""

import sys

from nanoswarm.cli import main

sys.exit(main())
