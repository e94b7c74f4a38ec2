import sys

from writemate.cli import main

sys.exit(main())
