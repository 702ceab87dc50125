"""``python -m pynet.cni``: run the pynet CNI plugin."""

import sys

from pynet.cni.main import main

sys.exit(main())
