"""`python -m trailhouse.cli`: the same as the `trailhouse` command."""

from trailhouse.cli.main import main

raise SystemExit(main())
