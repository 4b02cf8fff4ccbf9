"""``python -m durable_effect.cli``: the same as the ``durable-effect`` console script."""

from durable_effect.cli import main

raise SystemExit(main())
