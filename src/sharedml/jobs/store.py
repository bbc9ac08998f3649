"""Job and task states in a SQL database (SQLite file by default, any SQLAlchemy URL otherwise).

Several party processes of one local run may update the same SQLite file, so writes are short
transactions and SQLite waits (busy timeout) instead of failing when another writer holds the lock.
A SQLite file is created owner-only (0600) before SQLite opens it; SQLite gives its journal files
the database's mode, so they are private too.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from sqlalchemy import DateTime, Engine, Float, ForeignKey, String, Text, create_engine, delete, event, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ..private_files import FILE_MODE, make_private_dirs

STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def utc_now() -> dt.datetime:
    """Now in UTC, without a zone (the stores' DateTime columns hold naive UTC, on SQLite and PostgreSQL alike)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class _Base(DeclarativeBase):
    pass


class JobRecord(_Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20), default="queued")
    spec: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utc_now, index=True)  # the job list's order
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class TaskRecord(_Base):
    __tablename__ = "tasks"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    task: Mapped[str] = mapped_column(String(200), primary_key=True)
    party: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(20), default="queued")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class ProgressRecord(_Base):
    """How far a running task has got at one party (a table of its own, so older databases gain it)."""

    __tablename__ = "task_progress"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    task: Mapped[str] = mapped_column(String(200), primary_key=True)
    party: Mapped[str] = mapped_column(String(200), primary_key=True)
    done: Mapped[float] = mapped_column(Float, default=0.0)
    total: Mapped[float] = mapped_column(Float, default=1.0)
    message: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utc_now)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def private_sqlite(engine: Engine) -> Engine:
    """Create the engine's SQLite file owner-only (or make an existing one so) before its first connection:
    job states, errors and a node's audit log are nobody else's business on this machine.

    An existing file is never opened here: closing any descriptor of a file drops every POSIX lock this process
    holds on it, SQLite's included (another store of the process may have the database open), and SQLite
    then loses writes."""
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database)
        make_private_dirs(path.parent)
        path.touch(FILE_MODE)  # opens the file only if it is missing: then no store of ours can have it open
        os.chmod(path, FILE_MODE)
    return engine


class JobStore:
    """Reads and writes job/task states; safe to open from several processes on one SQLite file."""

    def __init__(self, url: str) -> None:
        self.url = url
        is_sqlite = url.startswith("sqlite")
        self.engine = private_sqlite(create_engine(url, connect_args={"timeout": 30} if is_sqlite else {}))
        if is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        _Base.metadata.create_all(self.engine)

    def create_job(self, job_id: str, name: str, spec: str, tasks: dict[str, list[str]]) -> None:
        """Record a new job and a queued row for every (task, party)."""
        with Session(self.engine) as session, session.begin():
            session.add(JobRecord(id=job_id, name=name, spec=spec, state="queued"))
            for task, parties in tasks.items():
                for party in parties:
                    session.add(TaskRecord(job_id=job_id, task=task, party=party, state="queued"))

    def requeue_job(self, job_id: str, name: str, tasks: dict[str, list[str]]) -> None:
        """Queue a failed or cancelled job of this name again under its id: every (task, party) row anew."""
        with Session(self.engine) as session, session.begin():
            job = session.get(JobRecord, job_id)
            if job is None or job.name != name or job.state not in ("failed", "cancelled"):
                found = "no such job" if job is None else f"job {job.name!r}, {job.state}"
                raise ValueError(f"cannot rerun {job_id!r} as job {name!r} ({found}): rerun only a failed or "
                                 "cancelled run of the same job; `sharedml jobs` lists them")
            job.state, job.error, job.started_at, job.finished_at = "queued", None, None, None
            session.execute(delete(TaskRecord).where(TaskRecord.job_id == job_id))
            session.execute(delete(ProgressRecord).where(ProgressRecord.job_id == job_id))
            for task, parties in tasks.items():
                for party in parties:
                    session.add(TaskRecord(job_id=job_id, task=task, party=party, state="queued"))

    def set_job_state(self, job_id: str, state: str, error: str | None = None) -> None:
        _check_state(state)
        with Session(self.engine) as session, session.begin():
            job = session.get(JobRecord, job_id)
            if job is None:
                raise KeyError(f"no job {job_id!r} in {self.url}")
            job.state = state
            if state == "running":
                job.started_at = utc_now()
            elif state in ("succeeded", "failed", "cancelled"):
                job.finished_at = utc_now()
                job.error = error

    def set_task_state(self, job_id: str, task: str, party: str, state: str, error: str | None = None) -> None:
        _check_state(state)
        with Session(self.engine) as session, session.begin():
            record = session.get(TaskRecord, (job_id, task, party))
            if record is None:
                record = TaskRecord(job_id=job_id, task=task, party=party)
                session.add(record)
            record.state = state
            if state == "running":
                record.started_at = utc_now()
            elif state in ("succeeded", "failed", "cancelled"):
                record.finished_at = utc_now()
                record.error = error

    def set_progress(self, job_id: str, task: str, party: str, done: float, total: float, message: str) -> None:
        with Session(self.engine) as session, session.begin():
            record = session.get(ProgressRecord, (job_id, task, party))
            if record is None:
                record = ProgressRecord(job_id=job_id, task=task, party=party)
                session.add(record)
            record.done, record.total, record.message, record.updated_at = done, total, message, utc_now()

    def progress(self, job_id: str) -> list[ProgressRecord]:
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(ProgressRecord).where(ProgressRecord.job_id == job_id)
            return list(session.scalars(query.order_by(ProgressRecord.task, ProgressRecord.party)))

    def job(self, job_id: str) -> JobRecord | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(JobRecord, job_id)

    def jobs(self, limit: int = 50, offset: int = 0, state: str | None = None) -> list[JobRecord]:
        """The newest jobs first, `limit` of them after skipping `offset`, only those in `state` if given."""
        query = select(JobRecord).order_by(JobRecord.created_at.desc(), JobRecord.id)
        if state is not None:
            query = query.where(JobRecord.state == state)
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(query.offset(offset).limit(limit)))

    def task_states(self, job_ids: list[str]) -> dict[str, dict[str, int]]:
        """{job id: {state: number of (task, party) in it}} for many jobs in one query (the job list)."""
        query = (select(TaskRecord.job_id, TaskRecord.state, func.count()).where(TaskRecord.job_id.in_(job_ids))
                 .group_by(TaskRecord.job_id, TaskRecord.state))
        counts: dict[str, dict[str, int]] = {job_id: {} for job_id in job_ids}
        with Session(self.engine) as session:
            for job_id, state, count in session.execute(query):
                counts[job_id][state] = int(count)
        return counts

    def count_jobs(self, state: str | None = None) -> int:
        query = select(func.count()).select_from(JobRecord)
        if state is not None:
            query = query.where(JobRecord.state == state)
        with Session(self.engine) as session:
            return int(session.scalar(query) or 0)

    def tasks(self, job_id: str) -> list[TaskRecord]:
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(TaskRecord).where(TaskRecord.job_id == job_id).order_by(TaskRecord.started_at)
            return list(session.scalars(query))

    def close(self) -> None:
        self.engine.dispose()


def _check_state(state: str) -> None:
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; states are {STATES}")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
