"""SPEC 10.1/10.2 through the real entry point: bad input and unreachable storage are one line
on stderr with the documented exit code, never a traceback, and nothing is written."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.runner import cli

pytestmark = pytest.mark.live

APP = "tests.cli.sample_app:jobs"


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("durable-effect: ")
    assert result.stdout == ""
    return lines[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


# -- too deep ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("start", APP, "heartbeat", "a", "--input"),
        ("add", APP, "clicks", "a", "--event"),
        ("send", APP, "orders", "a", "--event"),
        ("runs", "trigger", APP, "importCsv", "--input"),
    ],
)
def test_json_60000_deep_is_a_clean_usage_error(db: Path, args: tuple[str, ...]) -> None:
    deep = "[" * 60_000 + "]" * 60_000
    line = one_line_error(cli(db, *args, deep), 2)
    assert line.endswith("is not valid JSON: nested too deeply")
    assert not db.exists() or db.stat().st_size == 0 or _no_instances(db)


def _no_instances(db: Path) -> bool:
    import sqlite3

    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return all(
            conn.execute(f'select count(*) from "{t}"').fetchone()[0] == 0
            for t in tables
            if "record" in t or "alarm" in t
        )


# -- usage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_worker_concurrency_below_one_is_a_usage_error(db: Path, value: str) -> None:
    result = cli(db, "worker", APP, "--concurrency", value)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "argument --concurrency" in result.stderr
    assert not db.exists()


def test_bad_labels_on_the_cli_name_the_label(db: Path) -> None:
    line = one_line_error(
        cli(
            db,
            "runs",
            "trigger",
            APP,
            "importCsv",
            "--input",
            '{"filename": "a", "rows": 1}',
            "--label",
            "k=" + "v" * 1025,
        ),
        2,
    )
    assert line == (
        "durable-effect: ValidationError: labels['k']: must be at most 1024 characters, got 1025"
    )
    assert _no_instances(db)


# -- storage that cannot be opened ------------------------------------------------------------


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` unwritable even for root (immutable), or by mode for anyone else."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        yield
        return
    chattr = shutil.which("chattr")
    assert chattr is not None, "as root, the read-only test needs chattr (e2fsprogs)"
    subprocess.run([chattr, "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("just some notes, not a database\n")
    line = one_line_error(
        cli(None, "status", APP, "heartbeat", "a", "--storage", f"sqlite:///{path}"), 4
    )
    assert line.startswith(f"durable-effect: cannot open storage sqlite:///{path}: ")
    assert "not a database" in line
    assert path.read_text() == "just some notes, not a database\n"


def test_a_missing_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/missing/dir/jobs.db"
    line = one_line_error(cli(None, "migrate", "--storage", url), 4)
    assert line.startswith(f"durable-effect: cannot open storage {url}: ")
    assert not (tmp_path / "missing").exists()


def test_proc_self_mem(tmp_path: Path) -> None:
    line = one_line_error(
        cli(None, "state", APP, "heartbeat", "a", "--storage", "sqlite:////proc/self/mem"), 4
    )
    assert line.startswith("durable-effect: cannot open storage sqlite:////proc/self/mem: ")


def test_a_read_only_file(db: Path) -> None:
    assert cli(db, "migrate", "--storage", f"sqlite:///{db}").returncode == 0
    before = db.read_bytes()
    with read_only(db):
        line = one_line_error(
            cli(
                db,
                "start",
                APP,
                "heartbeat",
                "a",
                "--input",
                '{"beats": 0}',
                "--storage",
                f"sqlite:///{db}",
            ),
            4,
        )
    assert line.startswith(f"durable-effect: storage sqlite:///{db}: StorageError: ")
    assert "readonly" in line
    assert db.read_bytes() == before


def test_a_refused_postgresql_connection_hides_the_password() -> None:
    url = f"postgresql://app:s3cret-pw@127.0.0.1:{_refused_port()}/jobs?connect_timeout=5"
    for args in (
        ("status", APP, "heartbeat", "a", "--storage", url),
        ("migrate", "--storage", url),
    ):
        result = cli(None, *args)
        line = one_line_error(result, 4)
        assert "s3cret-pw" not in result.stderr
        assert line.startswith(
            "durable-effect: cannot open storage postgresql://app:***@127.0.0.1:"
        )
        assert "refused" in line.lower()


def test_the_storage_variable_names_a_store_that_cannot_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nowhere/jobs.db"
    result = cli(None, "migrate", env={"DURABLE_EFFECT_STORAGE": url})
    line = one_line_error(result, 4)
    assert line.startswith(f"durable-effect: cannot open storage {url}: ")


def test_an_unsupported_url_is_a_usage_error() -> None:
    line = one_line_error(cli(None, "migrate", "--storage", "redis://cache"), 2)
    assert "unsupported storage URL 'redis://cache'" in line


def test_an_unsupported_url_hides_its_password() -> None:
    result = cli(None, "migrate", "--storage", "mysql://app:s3cret-pw@db/jobs")
    line = one_line_error(result, 2)
    assert "s3cret-pw" not in result.stderr
    assert "unsupported storage URL 'mysql://app:***@db/jobs'" in line
