import sys

from gateway.worker.cli import main

sys.exit(main())
