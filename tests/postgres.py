"""A throwaway PostgreSQL server for the tests: initdb into a temp dir, started on a free port, stopped at the end.

Each pytest(-xdist) worker process starts its own server the first time a test asks for one. The schema is applied
once to a template database; every test gets a fresh copy (CREATE DATABASE … TEMPLATE), dropped afterwards.
Binaries: $POSTGRES_BIN, else Debian's /usr/lib/postgresql/<version>/bin, else initdb and pg_ctl on PATH
(scripts/ensure-postgres installs Debian's `postgresql` when they are missing). As root the server runs as the
`postgres` user (initdb refuses root).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from core.storage.migrate import migrate

T = TypeVar("T")
TEMPLATE = "app_template"
SUPERUSER = "postgres"
# A server for tests: durability off (nothing here must survive a crash), enough connections for
# several app processes with their pools.
SERVER_SETTINGS = {
    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "300",
    "shared_buffers": "32MB", "log_min_messages": "warning", "log_min_duration_statement": "-1",
}


class PostgresUnavailable(Exception):
    """No PostgreSQL server could be started here; the message says what to install."""


def find_bindir() -> Path:
    candidates: list[Path] = []
    if os.environ.get("POSTGRES_BIN"):
        candidates.append(Path(os.environ["POSTGRES_BIN"]))
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda path: [int(part) for part in re.findall(r"\d+", path.parent.name)], reverse=True)
    candidates += versions
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found: the store tests run against a real server. "
        "Install Debian's `postgresql` (scripts/test does it when run as root: scripts/ensure-postgres), or set "
        "POSTGRES_BIN to the folder holding initdb and pg_ctl.")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on a fresh loop in a thread: callable from sync code and from inside a loop."""
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(("ok", asyncio.run(coroutine)))
        except BaseException as error:  # noqa: BLE001 - handed back to the caller
            result.append(("error", error))

    thread = threading.Thread(target=target, name="postgres-admin")
    thread.start()
    thread.join()
    kind, value = result[0]
    if kind == "error":
        raise value
    return value


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int = 0
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))
    _as: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=120, **self._as)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{' '.join(command)} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done

    @classmethod
    def start(cls) -> PostgresServer:
        server = cls(find_bindir(), Path(tempfile.mkdtemp(prefix="pgtest-")))
        try:
            server._start()
        except BaseException:
            server.stop()
            raise
        return server

    def _start(self) -> None:
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root, and there is no `postgres` user to run the server as "
                                          "(initdb refuses root): install Debian's `postgresql`, which creates it")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [],
                          "env": {**os.environ, "HOME": str(self.root)}}
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                    "-E", "UTF8", "--locale=C", "--no-sync")
        for attempt in range(5):
            self.port = _free_port()
            options = " ".join(f"-c {key}={value}" for key, value in {
                **SERVER_SETTINGS, "port": self.port, "listen_addresses": "127.0.0.1",
                "unix_socket_directories": str(self.root)}.items())
            try:
                self._run(str(self.bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
                            "-l", str(self.root / "self.log"), "-o", options)
                break
            except PostgresUnavailable:
                if attempt == 4:  # the port was taken between choosing and binding, five times: give up
                    raise PostgresUnavailable(f"PostgreSQL did not start: {self.log()[-3000:]}")
        run_async(self._prepare_template())

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.url("postgres"))

    async def _prepare_template(self) -> None:
        admin = await self._admin()
        try:
            await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
        finally:
            await admin.close()
        await migrate(self.url(TEMPLATE))

    def create_database(self, *, migrated: bool = True) -> str:
        """A fresh database (with the schema, unless `migrated` is False); returns its URL."""
        name = f"test_{next(self._names)}"
        template = TEMPLATE if migrated else "template0"

        async def create() -> None:
            admin = await self._admin()
            try:
                await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
            finally:
                await admin.close()

        run_async(create())
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]

        async def drop() -> None:
            admin = await self._admin()
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

        run_async(drop())

    @contextmanager
    def transaction_pooler(self, url: str, server_connections: int = 3) -> Iterator[str]:
        """PgBouncer in transaction mode in front of the database of `url` (as Supabase's pooler on port 6543, which
        keeps no prepared statements between transactions); yields the URL to connect through it."""
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not os.access(binary, os.X_OK):
            raise PostgresUnavailable("PgBouncer was not found: the store is tested through a pooler in transaction "
                                      "mode. Install Debian's `pgbouncer` (scripts/ensure-postgres does it as root).")
        database = url.rsplit("/", 1)[-1]
        folder = self.root / f"pgbouncer-{database}"
        folder.mkdir()
        port = _free_port()
        (folder / "users.txt").write_text(f'"{SUPERUSER}" ""\n')
        (folder / "pgbouncer.ini").write_text(
            f"[databases]\n{database} = host=127.0.0.1 port={self.port} dbname={database} user={SUPERUSER}\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {folder / 'users.txt'}\npool_mode = transaction\n"
            f"default_pool_size = {server_connections}\nmax_client_conn = 200\nlogfile = {folder / 'log'}\n")
        if self._as:
            os.chown(folder, self._as["user"], self._as["group"])
        process = subprocess.Popen([binary, str(folder / "pgbouncer.ini")], cwd=folder, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT, **self._as)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
                        raise PostgresUnavailable(f"PgBouncer did not start: {log[-2000:]}")
                    time.sleep(0.05)
            yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"
        finally:
            process.terminate()
            process.wait(timeout=10)

    def stop(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            shutil.rmtree(self.root, ignore_errors=True)
            return
        try:
            subprocess.run([str(self.bindir / "pg_ctl"), "stop", "-m", "immediate", "-w", "-D", str(self.data)],
                           cwd=self.root, capture_output=True, timeout=60, **self._as)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
