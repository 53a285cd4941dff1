"""Allow ``python -m mnistfc``."""

from mnistfc.cli.main import main

raise SystemExit(main())
