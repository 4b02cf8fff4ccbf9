"""``python -m durable_effect``: the same as the ``durable-effect`` console script."""

from durable_effect.cli import main

raise SystemExit(main())
