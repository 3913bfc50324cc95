"""Real engines on loopback for tests and benchmarks: a Dask cluster of separate OS processes
(``dask scheduler`` + ``dask worker``) and a private PostgreSQL cluster (``initdb`` + ``pg_ctl``)
under a temporary folder, run as an unprivileged user when the tests run as root.

Every process has a bounded life: workers exit when their scheduler has been gone for
``death_timeout`` seconds, the scheduler exits after ``idle_timeout`` seconds without a client,
PostgreSQL is stopped with ``pg_ctl stop -m immediate`` by the fixture (and killed if that fails).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import free_port, stop_process

# --- Dask ------------------------------------------------------------------------------------------


def _dask_command(kind: str) -> list[str]:
    """``dask scheduler`` / ``dask worker`` from this interpreter's environment."""
    script = Path(sys.executable).with_name("dask")
    if script.exists():
        return [str(script), kind]
    return [sys.executable, "-m", f"distributed.cli.dask_{kind}"]


def have_dask_cli() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


DASK_REASON = "dask.distributed is not installed (pip install -e '.[test]')"


class DaskProcessCluster:
    """``dask scheduler`` and ``n_workers`` ``dask worker --no-nanny`` processes on 127.0.0.1.

    ``--no-nanny``: the process the test holds *is* the worker, so SIGKILL kills the worker and
    no nanny brings it back. Each worker runs ``nthreads`` threads (1: one task at a time).
    """

    def __init__(self, root: Path, *, n_workers: int = 2, nthreads: int = 1,
                 idle_timeout: int = 600, death_timeout: int = 30) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.n_workers, self.nthreads = n_workers, nthreads
        self.idle_timeout, self.death_timeout = idle_timeout, death_timeout
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self._logs: list = []
        self.start_seconds = 0.0

    def _spawn(self, cmd: list[str], log_name: str) -> subprocess.Popen:
        log = open(self.root / log_name, "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "True", "PYTHONUNBUFFERED": "1",
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def start(self, timeout: float = 90) -> DaskProcessCluster:
        started = time.perf_counter()
        self.scheduler = self._spawn(
            [*_dask_command("scheduler"), "--host", "127.0.0.1", "--port", str(self.port),
             "--no-dashboard", "--idle-timeout", f"{self.idle_timeout}s"], "scheduler.log")
        for i in range(self.n_workers):
            self.add_worker(name=f"w{i}")
        try:
            self.wait_for_workers(self.n_workers, timeout)
        except Exception:
            self.stop()
            raise
        self.start_seconds = time.perf_counter() - started
        return self

    def add_worker(self, *, name: str) -> subprocess.Popen:
        proc = self._spawn(
            [*_dask_command("worker"), self.address, "--name", name, "--host", "127.0.0.1",
             "--nthreads", str(self.nthreads), "--no-nanny", "--no-dashboard", "--memory-limit", "0",
             "--death-timeout", str(self.death_timeout)], f"worker-{name}.log")
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, n: int, timeout: float) -> None:
        from distributed import Client

        deadline = time.monotonic() + timeout
        while True:
            try:
                with Client(self.address, timeout=5, set_as_default=False) as client:
                    client.wait_for_workers(n, timeout=max(1.0, deadline - time.monotonic()))
                    return
            except (OSError, TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"the Dask cluster at {self.address} did not get {n} workers in "
                                       f"{timeout:.0f} s ({exc}); see the logs in {self.root}") from None
                time.sleep(0.5)

    def worker_names(self) -> list[str]:
        from distributed import Client

        with Client(self.address, timeout=5, set_as_default=False) as client:
            return sorted(w["name"] for w in client.scheduler_info()["workers"].values())

    def kill_worker(self, index: int) -> None:
        proc = self.workers[index]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> None:
        for proc in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            stop_process(proc, timeout=10)
        self.workers, self.scheduler = [], None
        for log in self._logs:
            log.close()
        self._logs = []

    def __enter__(self) -> DaskProcessCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- PostgreSQL ------------------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, or Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found:
        folder = Path(found).resolve().parent  # /usr/local/bin/initdb may link into Debian's folder
        if all((folder / tool).exists() for tool in ("pg_ctl", "createdb")):
            return folder
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def have_psycopg2() -> bool:
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return False
    return True


def postgres_skip_reason() -> str | None:
    """None when a private PostgreSQL cluster can run here, else the one reason it cannot."""
    if postgres_bin() is None:
        return "PostgreSQL binaries (initdb, pg_ctl) not found (apt-get install postgresql)"
    if not have_psycopg2():
        return "psycopg2 is not installed (pip install -e '.[test]')"
    if os.geteuid() == 0 and _unprivileged_user() is None:
        return "running as root and no unprivileged user to run PostgreSQL as"
    return None


def _unprivileged_user() -> pwd.struct_passwd | None:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


class PostgresCluster:
    """A private PostgreSQL cluster in ``root/pgdata`` on a free loopback port, trust auth on
    127.0.0.1 only, run as an unprivileged user when this process is root (PostgreSQL refuses root)."""

    def __init__(self, root: Path | None = None, *, port: int | None = None, user: str = "mlflow") -> None:
        # Its own short folder under the temp dir: reachable by the server's user (pytest's folders
        # are private to root) and short enough for a unix socket path.
        self.root = root or Path(tempfile.mkdtemp(prefix="nba-mcp-pg-"))
        self.bin = postgres_bin()
        self.port = port or free_port()
        self.user = user
        self.data = self.root / "pgdata"
        self.socket_dir = self.root / "socket"
        self.start_seconds = 0.0
        self._as = None if os.geteuid() != 0 else _unprivileged_user()

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        kwargs = {}
        if self._as is not None:
            kwargs = {"user": self._as.pw_uid, "group": self._as.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(self.root)}
        out = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, text=True,
                             timeout=timeout, env=env, cwd=self.root, **kwargs)
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({out.returncode}): {out.stdout}{out.stderr}")
        return out

    def start(self) -> PostgresCluster:
        started = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._as is not None:
            for path in (self.root, self.socket_dir):
                os.chown(path, self._as.pw_uid, self._as.pw_gid)
        try:
            self._initdb_and_start()
        except BaseException:
            self.remove()
            raise
        self.start_seconds = time.perf_counter() - started
        return self

    def _initdb_and_start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "postgres.log"),
                  "-w", "-t", "60", "start", timeout=90)
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "mlflow")
        self._start_watchdog()

    def _start_watchdog(self) -> None:
        """A small process that stops the cluster if this process dies without stopping it
        (pytest killed by a CI timeout): PostgreSQL has no idle timeout of its own."""
        code = (
            "import os, subprocess, shutil, sys, time\n"
            "parent, pg_ctl, data, root = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]\n"
            "while os.path.exists(os.path.join(data, 'postmaster.pid')):\n"
            "    try:\n"
            "        os.kill(parent, 0)\n"
            "    except OSError:\n"
            "        subprocess.run([pg_ctl, '-D', data, '-m', 'immediate', 'stop'], capture_output=True, timeout=60,\n"
            "                       **({'user': int(sys.argv[5]), 'group': int(sys.argv[6])} if len(sys.argv) > 5 else {}))\n"
            "        shutil.rmtree(root, ignore_errors=True)\n"
            "        break\n"
            "    time.sleep(2)\n"
        )
        ids = [str(self._as.pw_uid), str(self._as.pw_gid)] if self._as is not None else []
        subprocess.Popen([sys.executable, "-c", code, str(os.getpid()), str(self.bin / "pg_ctl"), str(self.data),
                          str(self.root), *ids], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def uri(self, database: str = "mlflow") -> str:
        # The driver named: MLflow's SQLAlchemy otherwise picks psycopg 3, which we do not install.
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return self.uri(name)

    def stop(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            try:
                pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.remove()
