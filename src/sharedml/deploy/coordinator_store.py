"""The coordinator's database: job and task states (jobs/store.py's tables) plus what scheduling across
nodes adds: who submitted a job, its attempt number, the protocol ports the nodes announced, and the
logs and metrics each node reported for each finished task. Everything survives a coordinator restart.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import DateTime, Integer, String, Text, func, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ..jobs.store import JobRecord, JobStore, TaskRecord, utc_now


class _Base(DeclarativeBase):
    pass


class JobMeta(_Base):
    __tablename__ = "coordinator_jobs"
    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    submitter: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    ports: Mapped[str] = mapped_column(Text, default="{}")  # JSON {party: port} of the current attempt


class TaskReport(_Base):
    __tablename__ = "task_reports"
    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    task: Mapped[str] = mapped_column(String(200), primary_key=True)
    party: Mapped[str] = mapped_column(String(200), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    metrics: Mapped[str] = mapped_column(Text, default="{}")
    log: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utc_now)


class JobApproval(_Base):
    """A node whose operators must approve a job by hand, and their decision as last read from the node."""

    __tablename__ = "coordinator_approvals"
    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    party: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))  # pending | approved | rejected
    reason: Mapped[str] = mapped_column(Text, default="")


class CoordinatorStore:
    def __init__(self, url: str) -> None:
        self.states = JobStore(url)
        self.engine = self.states.engine
        _Base.metadata.create_all(self.engine)

    def create(self, job_id: str, name: str, spec_json: str, tasks: dict[str, list[str]], submitter: str,
               awaiting: list[str] = ()) -> None:
        """Record a queued job; `awaiting`: the parties whose operators must still approve it."""
        self.states.create_job(job_id, name, spec_json, tasks)
        with Session(self.engine) as session, session.begin():
            session.add(JobMeta(job_id=job_id, submitter=submitter))
            session.add_all(JobApproval(job_id=job_id, party=party, state="pending") for party in awaiting)

    def approvals(self, job_id: str) -> dict[str, JobApproval]:
        with Session(self.engine, expire_on_commit=False) as session:
            rows = session.scalars(select(JobApproval).where(JobApproval.job_id == job_id))
            return {row.party: row for row in rows}

    def awaiting_approval(self) -> dict[str, list[str]]:
        """{job id: parties still pending} over queued jobs."""
        query = (select(JobApproval.job_id, JobApproval.party).join(JobRecord, JobRecord.id == JobApproval.job_id)
                 .where(JobApproval.state == "pending", JobRecord.state == "queued"))
        waiting: dict[str, list[str]] = {}
        with Session(self.engine) as session:
            for job_id, party in session.execute(query):
                waiting.setdefault(job_id, []).append(party)
        return waiting

    def set_approval(self, job_id: str, party: str, state: str, reason: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(JobApproval).where(JobApproval.job_id == job_id, JobApproval.party == party)
                            .values(state=state, reason=reason))

    def meta(self, job_id: str) -> JobMeta:
        with Session(self.engine, expire_on_commit=False) as session:
            meta = session.get(JobMeta, job_id)
        if meta is None:
            raise KeyError(job_id)
        return meta

    def view(self, job_id: str) -> tuple[JobRecord, JobMeta, list[TaskRecord]] | None:
        """A job, its scheduling record and its tasks in one session (the status query's hot path)."""
        with Session(self.engine, expire_on_commit=False) as session:
            job, meta = session.get(JobRecord, job_id), session.get(JobMeta, job_id)
            if job is None or meta is None:
                return None
            query = select(TaskRecord).where(TaskRecord.job_id == job_id).order_by(TaskRecord.started_at)
            return job, meta, list(session.scalars(query))

    def set_ports(self, job_id: str, ports: dict[str, int]) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(JobMeta).where(JobMeta.job_id == job_id).values(ports=json.dumps(ports)))

    def transition(self, job_id: str, allowed: tuple[str, ...], state: str, error: str | None = None) -> bool:
        """Move a job to `state` only if it is in one of `allowed` states, atomically; False if it was not.
        The API and the scheduler (separate processes) both change job states; this keeps either from
        overwriting the other's decision, e.g. a job finishing just as a user cancels it."""
        values: dict[str, Any] = {"state": state}
        if state == "running":
            values["started_at"] = utc_now()
        elif state in ("succeeded", "failed", "cancelled"):
            values.update(finished_at=utc_now(), error=error)
        with Session(self.engine) as session, session.begin():
            result = session.execute(update(JobRecord).where(JobRecord.id == job_id, JobRecord.state.in_(allowed))
                                     .values(**values))
            return result.rowcount == 1

    def in_state(self, state: str, limit: int | None = None) -> list[JobRecord]:
        """Jobs in `state`, oldest first (the queue order)."""
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(JobRecord).where(JobRecord.state == state).order_by(JobRecord.created_at)
            return list(session.scalars(query.limit(limit)))

    def count(self, state: str) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(JobRecord).where(JobRecord.state == state)) or 0

    def requeue(self, job_id: str, tasks: list[str]) -> int | None:
        """Put a failed or cancelled job's `tasks` back to queued and start its next attempt: the attempt's
        number, or None if the job was not failed or cancelled (any more)."""
        with Session(self.engine) as session, session.begin():
            job = session.execute(update(JobRecord).where(JobRecord.id == job_id,
                                                          JobRecord.state.in_(("failed", "cancelled")))
                                  .values(state="queued", error=None, finished_at=None))
            if job.rowcount != 1:
                return None
            session.execute(update(TaskRecord).where(TaskRecord.job_id == job_id, TaskRecord.task.in_(tasks))
                            .values(state="queued", error=None, started_at=None, finished_at=None))
            meta = session.get(JobMeta, job_id)
            if meta is None:
                raise KeyError(job_id)
            meta.attempt += 1
            return meta.attempt

    def add_report(self, job_id: str, task: str, party: str, attempt: int, state: str,
                   metrics: dict[str, Any], log: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.merge(TaskReport(job_id=job_id, task=task, party=party, attempt=attempt, state=state,
                                     metrics=json.dumps(metrics, default=str), log=log))

    def reports(self, job_id: str) -> list[TaskReport]:
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(TaskReport).where(TaskReport.job_id == job_id)
            return list(session.scalars(query.order_by(TaskReport.attempt, TaskReport.at)))
