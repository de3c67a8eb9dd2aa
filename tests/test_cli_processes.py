"""`icc` as its user runs it: real processes on an embedded PostgreSQL in a temporary ICC_DATA_DIR.
Progress goes to stderr and results to stdout, so the README's `TOKEN=$(icc token create ...)`
works as written; `icc serve` stops the database it started on SIGTERM, SIGINT and SIGHUP (with
one worker or several), and a start after a crash reuses or restarts what the crash left."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from tests import support

ICC = str(Path(sys.executable).parent / "icc")
README = support.REPO / "README.md"


def icc_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ICC_DATABASE_URL"}
    return env | {
        "ICC_DATA_DIR": str(data_dir),
        "ICC_ENVIRONMENT": "development",
        "ICC_CONFIG": str(support.NO_CONFIG),
    }


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded PostgreSQL initialised and migrated once (`icc migrate`), and stopped again."""
    directory = tmp_path_factory.mktemp("icc-data")
    migrated = subprocess.run(
        [ICC, "migrate"], env=icc_env(directory), capture_output=True, text=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == ""
    assert "Migrations applied." in migrated.stderr
    return directory


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0])


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_database_stopped(data_dir: Path, pid: int) -> None:
    assert not is_running(pid), f"the embedded PostgreSQL (pid {pid}) is still running"
    assert not (data_dir / "pgdata" / "postmaster.pid").exists()


@contextmanager
def icc_serve(data_dir: Path, *options: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """`icc serve` on a free port, until /healthz answers; killed at the end if still running."""
    port = support.free_port()
    log_path = data_dir / f"serve-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [ICC, "serve", "--port", str(port), *options],
            env=icc_env(data_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            support.wait_until_healthy(
                f"http://127.0.0.1:{port}", process, name="icc serve", log=log_path.read_text, timeout=60
            )
            yield process, f"http://127.0.0.1:{port}"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def stop_with(process: subprocess.Popen, signum: int) -> None:
    process.send_signal(signum)
    assert process.wait(timeout=30) == 0


def test_token_create_prints_the_token_alone_on_stdout(data_dir):
    env = icc_env(data_dir)
    created = subprocess.run(
        [ICC, "user", "create", "--email", "ops@example.com", "--name", "Ops", "--password", "long-enough"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout == "Created responder ops@example.com.\n"

    issued = subprocess.run(
        [ICC, "token", "create", "--email", "ops@example.com"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert issued.returncode == 0, issued.stderr
    assert re.fullmatch(r"icc_[A-Za-z0-9_-]{43}\n", issued.stdout), issued.stdout
    assert "Starting the embedded PostgreSQL" in issued.stderr


def readme_api_example() -> str:
    """The README's first API example: a shell script that takes a token and declares an incident."""
    section = README.read_text().split("## The API", 1)[1]
    script = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert script, "README.md's API section has no sh example"
    return script.group(1)


def test_the_readme_api_example_works_as_written_and_sigterm_stops_the_database(data_dir):
    with icc_serve(data_dir, "--demo") as (server, base_url):
        database = postmaster_pid(data_dir)
        script = readme_api_example().replace(".venv/bin/icc", ICC).replace("http://127.0.0.1:8000", base_url)

        answer = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=icc_env(data_dir),
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert answer.returncode == 0, answer.stderr
        declared = json.loads(answer.stdout)
        assert declared["title"] == "Checkout returns 502"
        assert declared["ref"].startswith("INC-")
        # `icc token create` shared the running server and left it running when it exited
        assert is_running(database)
        stop_with(server, signal.SIGTERM)
    assert_database_stopped(data_dir, database)


def test_sighup_stops_several_workers_and_the_database(data_dir):
    with icc_serve(data_dir, "--workers", "2") as (server, _):
        database = postmaster_pid(data_dir)
        workers = psutil.Process(server.pid).children()
        stop_with(server, signal.SIGHUP)
    # multiprocessing's resource tracker leaves a moment after the supervisor that spawned it
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not [w for w in alive if is_running(w.pid)]
    assert_database_stopped(data_dir, database)


def test_after_icc_serve_is_killed_a_restart_reuses_its_database_and_ctrl_c_stops_it(data_dir):
    with icc_serve(data_dir) as (killed, _):
        database = postmaster_pid(data_dir)
        killed.kill()
        killed.wait()
    assert is_running(database)  # nothing could stop it: SIGKILL runs no exit handler

    with icc_serve(data_dir) as (restarted, _):
        assert postmaster_pid(data_dir) == database
        stop_with(restarted, signal.SIGINT)
    assert_database_stopped(data_dir, database)


def test_a_stale_postmaster_pid_whose_number_another_process_now_has_does_not_stop_a_start(data_dir):
    # The server died with its machine; after the reboot, its pid belongs to something else.
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        lock_file = data_dir / "pgdata" / "postmaster.pid"
        assert not lock_file.exists()
        lock_file.write_text(
            f"{bystander.pid}\n{data_dir / 'pgdata'}\n{int(time.time())}\n5432\n\n\n0 0\nready\n"
        )

        with icc_serve(data_dir) as (server, _):
            database = postmaster_pid(data_dir)
            assert database != bystander.pid
            stop_with(server, signal.SIGTERM)
        assert_database_stopped(data_dir, database)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
