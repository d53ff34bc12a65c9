import sys

from sagan.cli import main

sys.exit(main())
