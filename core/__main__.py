"""``python -m flowkernel``: the same as the ``flowkernel`` command."""

from flowkernel.cli import main

raise SystemExit(main())
