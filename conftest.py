"""Names every doctest in the package may use without importing them."""

from __future__ import annotations

import pytest

from durable_effect import errors


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict[str, object]) -> None:
    for name in errors.__all__:
        doctest_namespace[name] = getattr(errors, name)
