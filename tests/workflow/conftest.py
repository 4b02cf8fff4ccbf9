"""The job suites' storage plumbing for the workflow suites: a fresh PostgreSQL store for
every test marked ``postgres`` (see ``tests/jobs/conftest.py``)."""

from __future__ import annotations

from tests.conftest_pg import pg_server, pg_store  # noqa: F401
from tests.jobs.conftest import postgres_job_stores  # noqa: F401
