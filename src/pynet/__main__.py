import sys

from pynet.cli import main

sys.exit(main())
