import sys

from bitfold.cli import main

sys.exit(main())
