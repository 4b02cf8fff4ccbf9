"""Repository-wide pytest setup: doctest names, no silent skips in CI, and one early, clear
stop when the PostgreSQL tests cannot have a server (instead of one error per test)."""

from __future__ import annotations

import os

import pytest

from durable_effect import errors


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict[str, object]) -> None:
    for name in errors.__all__:
        doctest_namespace[name] = getattr(errors, name)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Before any test runs: if PostgreSQL tests were collected and no server can be had,
    stop the run with the one-line fix."""
    if os.environ.get("DURABLE_EFFECT_SKIP_PG") == "1" and not os.environ.get("CI"):
        return
    if not any(item.get_closest_marker("postgres") for item in items):
        return
    from tests.pg_harness import server_available

    why = server_available()
    if why is not None:
        pytest.exit(f"the PostgreSQL tests cannot run: {why}", returncode=4)


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
