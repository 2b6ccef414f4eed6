import sys

from inkloop.devservers.labelstudio.cli import main

sys.exit(main())
