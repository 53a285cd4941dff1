"""Allow ``python -m mnistfc``."""

from mnistfc.cli import main

raise SystemExit(main())
