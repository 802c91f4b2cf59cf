import sys

from dmr_appliance.cli import main

sys.exit(main())
