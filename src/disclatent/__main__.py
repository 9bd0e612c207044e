import sys

from disclatent.cli import main

sys.exit(main())
