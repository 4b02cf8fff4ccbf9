"""Repository-wide pytest setup: doctest names, and no silent skips in CI."""

from __future__ import annotations

import os

import pytest

from durable_effect import errors


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict[str, object]) -> None:
    for name in errors.__all__:
        doctest_namespace[name] = getattr(errors, name)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI every test must run: a skip or xfail fails the run."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = reporter.stats.get("skipped", []) + reporter.stats.get("xfailed", [])
    if skipped:
        reporter.write_line(
            f"CI: {len(skipped)} test(s) skipped or xfailed; every test must run in CI",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
