"""A throwaway PostgreSQL server for the tests: ``initdb`` into a temp dir, loopback port.

``start_server()`` makes a cluster (trust auth, UTF-8, C locale, ``fsync=on``), starts it on a
free 127.0.0.1 port with its unix socket in the temp dir, and returns a `PgServer` that can
create databases, stop, start again on the same port and data dir (restart tests), and remove
everything. As root (CI runs as root, and PostgreSQL refuses to) the server binaries run as
an unprivileged account — ``postgres`` if it exists, else ``nobody`` — that owns the temp dir.

``server_from_env()`` honours ``DURABLE_EFFECT_PG_URL``: a URL of an existing server whose
role may create databases; such a server is never stopped or restarted by the tests.
The binaries are looked up in ``DURABLE_EFFECT_PG_BIN``, then in the ``pgserver`` package
(PostgreSQL's binaries as a pip wheel, in the ``dev`` extra), then ``/usr/lib/postgresql/*/bin``
(Debian's ``postgresql`` package, newest first), then ``PATH``. `MISSING_SERVER` is the one
line that says how to get one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import glob
import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

__all__ = [
    "MISSING_SERVER",
    "DatabaseFactory",
    "PgServer",
    "PgServerError",
    "find_bindir",
    "pgserver_bindir",
    "server_available",
    "server_from_env",
    "start_server",
]

#: What to do when no server can be had, in one line.
MISSING_SERVER = (
    "no PostgreSQL server for the tests: run `.venv/bin/pip install pgserver` (PostgreSQL as a "
    "wheel; `make venv` installs it), or `apt-get install postgresql`, or set "
    "DURABLE_EFFECT_PG_URL=postgresql://user@host:port/db to use a running server"
)

_SUPERUSER = "postgres"
_START_TIMEOUT_S = 60
_PORT_ATTEMPTS = 3


class PgServerError(RuntimeError):
    """The server could not be set up; the message carries the command output and log."""


def find_bindir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    configured = os.environ.get("DURABLE_EFFECT_PG_BIN")
    if configured:
        if (Path(configured) / "initdb").exists() and (Path(configured) / "pg_ctl").exists():
            return Path(configured)
        raise PgServerError(
            f"DURABLE_EFFECT_PG_BIN={configured!r} holds no initdb and pg_ctl; {MISSING_SERVER}"
        )
    candidates = [str(bundled)] if (bundled := pgserver_bindir()) is not None else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise PgServerError(
        "no PostgreSQL server binaries found (looked in DURABLE_EFFECT_PG_BIN, the pgserver "
        f"package, /usr/lib/postgresql/*/bin and PATH); {MISSING_SERVER}"
    )


def pgserver_bindir() -> Path | None:
    """The binaries the ``pgserver`` wheel ships, if it is installed (found, not imported)."""
    try:
        spec = importlib.util.find_spec("pgserver")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    return bindir if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists() else None


def server_available() -> str | None:
    """``None`` if the tests can have a server (a URL, or binaries); else why not."""
    if os.environ.get("DURABLE_EFFECT_PG_URL"):
        return None
    try:
        find_bindir()
    except PgServerError as exc:
        return str(exc)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_as_prefix(user: str | None) -> list[str]:
    if user is None:
        return []
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--"]
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
    raise PgServerError("running as root, but neither runuser nor setpriv is available")


def _server_user() -> str | None:
    """The account the server runs as: none (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PgServerError("running as root and neither a postgres nor a nobody account exists")


class PgServer:
    """A running PostgreSQL server: URLs, databases, stop/start/restart, cleanup."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        password: str | None = None,
        base: Path | None = None,
        bindir: Path | None = None,
        run_as: str | None = None,
        query: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.base = base
        self.bindir = bindir
        self.run_as = run_as
        self.query = query
        #: Whether the server is up as far as this object knows (it started or stopped it).
        self.running = base is None

    @property
    def owned(self) -> bool:
        """Whether this harness started the server (and so may stop and restart it)."""
        return self.base is not None

    @property
    def datadir(self) -> Path:
        return self._base() / "data"

    @property
    def logfile(self) -> Path:
        return self._base() / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        auth = self.user if self.password is None else f"{self.user}:{self.password}"
        return urlunsplit(
            ("postgresql", f"{auth}@{self.host}:{self.port}", f"/{dbname}", self.query, "")
        )

    def log_tail(self, lines: int = 60) -> str:
        if self.base is None or not self.logfile.exists():
            return "(no server log)"
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])

    # -- databases -------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create an empty database (a copy of ``template0``); its URL."""
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                    sql.Identifier(name)
                )
            )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server (on its port and data dir) and wait until it accepts connections."""
        self._pg_ctl("start", "-w", "-t", str(_START_TIMEOUT_S), "-l", str(self.logfile))
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients, roll their transactions back)."""
        self._pg_ctl("stop", "-w", "-t", str(_START_TIMEOUT_S), "-m", mode)
        self.running = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        """Whether ``pg_ctl status`` finds the server running (always true for external ones)."""
        if not self.owned:
            return True
        result = self._run(
            [str(self._bin("pg_ctl")), "status", "-D", str(self.datadir)], check=False
        )
        self.running = result.returncode == 0
        return self.running

    def cleanup(self) -> None:
        """Stop the server if it runs and remove its directory.

        The stop is ``immediate``: the data is about to be deleted, so the shutdown
        checkpoint (seconds of fsync on a busy disk) would be wasted.
        """
        if self.base is None:
            return
        if self.is_running():
            with contextlib.suppress(PgServerError):
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    # -- internals -------------------------------------------------------------------------

    def _base(self) -> Path:
        if self.base is None:
            raise PgServerError("this server was not started by the harness")
        return self.base

    def _bin(self, name: str) -> Path:
        if self.bindir is None:
            raise PgServerError("this server was not started by the harness")
        return self.bindir / name

    def _pg_ctl(self, *args: str) -> None:
        self._run([str(self._bin("pg_ctl")), "-D", str(self.datadir), *args])

    def _run(
        self, command: Sequence[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        full = [*_run_as_prefix(self.run_as), *command]
        result = subprocess.run(
            full,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=_START_TIMEOUT_S + 30,
            check=False,
            cwd=self.base,
        )
        if check and result.returncode != 0:
            raise PgServerError(
                f"{' '.join(full)} exited with {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n"
                f"--- server log\n{self.log_tail()}"
            )
        return result


class DatabaseFactory:
    """Fresh databases made ahead of time in a background thread, dropped in background.

    ``CREATE DATABASE`` takes a few hundred milliseconds (it copies and syncs ``template0``);
    making the next one while a test runs keeps that off the tests' time. A database whose
    creation failed (the server was stopped by a restart test meanwhile) is made again,
    synchronously, when it is taken.
    """

    def __init__(self, server: PgServer, prefix: str) -> None:
        self._server = server
        self._prefix = prefix
        self._numbers = itertools.count(1)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="pg-databases"
        )
        self._next: concurrent.futures.Future[str] | None = None

    def take(self) -> str:
        """The name of a new, empty database; the next one starts being made."""
        ready, self._next = self._next, None
        name: str | None = None
        if ready is not None:
            with contextlib.suppress(Exception):
                name = ready.result()
        if name is None:
            name = self._make()
        self._next = self._executor.submit(self._make)
        return name

    def discard(self, name: str) -> None:
        """Drop ``name`` in background on an external server (errors are ignored).

        The harness's own cluster keeps it: ``DROP DATABASE`` forces a checkpoint (about a
        second here), and the whole cluster is deleted at the end anyway.
        """
        if not self._server.owned:
            self._executor.submit(self._drop_quietly, name)

    def close(self) -> None:
        """Finish background work; drop the database made ahead (external servers only)."""
        ready, self._next = self._next, None
        self._executor.shutdown(wait=True)
        if ready is not None and not self._server.owned:
            with contextlib.suppress(Exception):
                self._drop_quietly(ready.result())

    def _make(self) -> str:
        name = f"{self._prefix}_{next(self._numbers)}"
        self._server.create_database(name)
        return name

    def _drop_quietly(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self._server.drop_database(name)


def start_server(*, bindir: Path | None = None) -> PgServer:
    """initdb a new cluster in a temp dir and start it on a free loopback port."""
    found = bindir or find_bindir()
    run_as = _server_user()
    base = Path(tempfile.mkdtemp(prefix="durable_effect_pg_"))
    server = PgServer(
        host="127.0.0.1", port=0, user=_SUPERUSER, base=base, bindir=found, run_as=run_as
    )
    try:
        if run_as is not None:
            account = pwd.getpwnam(run_as)
            os.chown(base, account.pw_uid, account.pw_gid)
        base.chmod(0o700)
        server._run(
            [
                str(found / "initdb"),
                "-D",
                str(server.datadir),
                "-U",
                _SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        last: PgServerError | None = None
        for _ in range(_PORT_ATTEMPTS):
            server.port = _free_port()
            _configure(server)
            try:
                server.start()
            except PgServerError as exc:  # most likely somebody took the port meanwhile
                last = exc
                continue
            return server
        assert last is not None
        raise last
    except BaseException:
        server.cleanup()
        raise


def _configure(server: PgServer) -> None:
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(server.port),
        "unix_socket_directories": f"'{server._base()}'",
        "max_connections": "100",
        "fsync": "on",
        "shared_buffers": "32MB",
    }
    conf = server.datadir / "postgresql.auto.conf"
    body = "".join(f"{key} = {value}\n" for key, value in settings.items())
    # Written by us (root or not) but read by the server account: keep it readable.
    conf.write_text(body)
    if server.run_as is not None:
        account = pwd.getpwnam(server.run_as)
        os.chown(conf, account.pw_uid, account.pw_gid)
    conf.chmod(0o600)


def server_from_env() -> PgServer | None:
    """The server ``DURABLE_EFFECT_PG_URL`` names, if set (never stopped by the harness)."""
    url = os.environ.get("DURABLE_EFFECT_PG_URL")
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise PgServerError(
            f"DURABLE_EFFECT_PG_URL must be a postgresql://user@host:port/db URL, got {url!r}"
        )
    return PgServer(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or _SUPERUSER,
        password=parts.password,
        query=parts.query,
    )
