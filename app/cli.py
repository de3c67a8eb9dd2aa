"""`icc`: the one entry point. serve | migrate | user create | token create | seed."""

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from app.config import ConfigError, get_policy, get_settings

app = typer.Typer(help="Incident command center", no_args_is_help=True, add_completion=False)
user_app = typer.Typer(help="Manage users", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
runbooks_app = typer.Typer(help="Manage the runbook library", no_args_is_help=True)
app.add_typer(runbooks_app, name="runbooks")

T = TypeVar("T")


def _fail(message: str) -> None:
    typer.secho(f"icc: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _say(message: str, *, bold: bool = False, fg: str | None = None) -> None:
    """A progress or status line. It goes to stderr, so that stdout carries only a command's
    result and `TOKEN=$(icc token create ...)` captures the token alone."""
    typer.secho(message, err=True, bold=bold, fg=fg)


def _stop_as_on_ctrl_c(signum: int, frame: object) -> None:
    # Python dies of SIGTERM and SIGHUP on the spot, skipping the exit handlers that stop the
    # embedded PostgreSQL; as SIGINT, they end the command as Ctrl-C does (uvicorn, while it
    # serves, shuts down gracefully on it first).
    signal.raise_signal(signal.SIGINT)


def _database_url(*, embedded: bool) -> str:
    """ICC_DATABASE_URL when set; otherwise (if allowed) the embedded server in ICC_DATA_DIR."""
    settings = get_settings()
    if settings.database_url:
        return settings.database_url
    if not embedded:
        _fail("ICC_DATABASE_URL is not set")
    from app.db import start_embedded_postgres

    _say(f"Starting the embedded PostgreSQL in {settings.data_dir / 'pgdata'} ...")
    url = start_embedded_postgres(settings.data_dir)
    os.environ["ICC_DATABASE_URL"] = url  # server workers are new processes: they read it here
    get_settings.cache_clear()
    return url


def _run(url: str, work: Callable[..., Awaitable[T]]) -> T:
    from app.db import make_engine, make_sessionmaker

    async def main() -> T:
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


@app.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head)."""
    from app.migrate import upgrade_to_head

    upgrade_to_head(_database_url(embedded=True))
    _say("Migrations applied.")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes")] = 1,
    demo: Annotated[bool, typer.Option(help="Load demo users and incidents on first start")] = False,
) -> None:
    """Serve the web app. Without ICC_DATABASE_URL, an embedded PostgreSQL is started and
    migrated first; with it, run `icc migrate` before serving."""
    import uvicorn

    embedded = get_settings().database_url is None
    url = _database_url(embedded=True)
    if embedded:
        from app.migrate import upgrade_to_head

        upgrade_to_head(url)
    if demo:
        from app.demo import DEMO_LOGINS, load_demo

        # The action catalog calls the built-in receiver of this very server (server workers are
        # new processes: they read these here).
        os.environ["ICC_DEMO"] = "true"
        receiver_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
        os.environ.setdefault("ICC_ACTIONS_BASE_URL", f"http://{receiver_host}:{port}/demo/webhooks")
        get_settings.cache_clear()

        created = _run(url, load_demo)
        _say("Demo data loaded." if created else "Demo data already present.")
        for email, password, role in DEMO_LOGINS:
            _say(f"  sign in as {email} / {password} ({role})")
    _say(f"Incident command center on http://{host}:{port}  (Ctrl-C stops)", bold=True)
    options = {
        "factory": True,
        "host": host,
        "port": port,
        "proxy_headers": True,
        "log_level": "info",
        "access_log": get_settings().access_log,
    }
    if workers == 1:
        uvicorn.run("app.main:create_app", **options)
        return
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        """The supervisor uvicorn.run uses for several workers, except that a hangup stops it as
        SIGTERM does: uvicorn would restart the workers, and a closed terminal would leave the
        server and its database running with no one to stop them."""

        def handle_hup(self) -> None:
            self.handle_term()

    config = uvicorn.Config("app.main:create_app", workers=workers, **options)
    sock = config.bind_socket()
    try:
        Supervisor(config, sockets=[sock]).run()
    finally:
        sock.close()


@app.command()
def seed(demo: Annotated[bool, typer.Option(help="Demo users and incidents")] = True) -> None:
    """Load the demo data (once: does nothing if the demo users exist)."""
    from app.demo import load_demo

    if not demo:
        _fail("nothing to seed: pass --demo")
    created = _run(_database_url(embedded=True), load_demo)
    _say("Demo data loaded." if created else "Demo data already present.")


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="Sign-in email")],
    name: Annotated[str, typer.Option(help="Display name")],
    role: Annotated[str, typer.Option(help="admin, responder or viewer")] = "responder",
    password: Annotated[str | None, typer.Option(help="Omit to be asked (or for API-only users)")] = None,
) -> None:
    """Create a user."""
    from app.auth import service
    from app.errors import DomainError

    if password is None and sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def work(session):
        return await service.create_user(session, email=email, name=name, role=role, password=password)

    try:
        user = _run(_database_url(embedded=True), work)
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(f"Created {user.role} {user.email}.")


@token_app.command("create")
def token_create(
    email: Annotated[str, typer.Option(help="Whose token")],
    name: Annotated[str, typer.Option(help="What the token is for")] = "cli",
) -> None:
    """Create an API token and print it (it is shown only this once)."""
    from app.auth import service
    from app.errors import DomainError

    async def work(session):
        return await service.create_api_token(session, email=email, name=name)

    try:
        token = _run(_database_url(embedded=True), work)
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(token)


@app.command()
def worker() -> None:
    """Run only the scheduler (escalations and their notifications), for deployments that keep
    it apart from the web servers; any number may run. Servers started with
    ICC_RUN_SCHEDULER=false leave the work to it."""
    from app.escalation import scheduler

    url = _database_url(embedded=False)
    _say("Scheduler running (Ctrl-C stops).")

    async def main() -> None:
        from app.db import make_engine, make_sessionmaker

        engine = make_engine(url)
        try:
            await scheduler.run(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@runbooks_app.command("sync")
def runbooks_sync() -> None:
    """Index the markdown files in ICC_RUNBOOKS_DIR now (pages also pick up changes by themselves)."""
    from app.runbooks.service import sync_runbooks

    directory = get_settings().runbooks_dir

    async def work(session):
        return await sync_runbooks(session, directory=directory)

    report = _run(_database_url(embedded=True), work)
    typer.echo(
        f"Runbooks in {directory}: {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.removed)} removed."
    )
    for path, error in report.errors.items():
        _say(f"  {path}: {error}", fg=typer.colors.YELLOW)


def main() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_as_on_ctrl_c)
    try:
        get_settings()
        get_policy()
        app()
    except ConfigError as exc:
        typer.secho(f"icc: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
