"""``python -m durable_effect.cli`` (and ``python -m durable_effect``): the console script."""

from durable_effect.cli import main

raise SystemExit(main())
