"""A node's own records: the jobs it joined (spec, protocol port), its task runs, and the jobs waiting for
its operators' approval (under a policy with `approval: manual`).

The runs table is also the guard that a task never runs twice at once on a node: starting a run is
one conditional UPDATE (or INSERT) on the (job, task) row that succeeds only when the row is not
already running, so two concurrent requests cannot both win, whatever the database.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Engine, Integer, String, Text, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ..jobs.store import private_sqlite, utc_now

FINISHED = ("succeeded", "failed", "cancelled")


class _Base(DeclarativeBase):
    pass


class NodeJob(_Base):
    __tablename__ = "node_jobs"
    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    spec: Mapped[str] = mapped_column(Text)  # JSON of the JobSpec as approved
    submitter: Mapped[str] = mapped_column(String(200))
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utc_now)


class NodeRun(_Base):
    __tablename__ = "node_runs"
    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    task: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utc_now)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class NodeApproval(_Base):
    """A job that passed the policy and waits for (or got) an operator's decision."""

    __tablename__ = "node_approvals"
    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    spec: Mapped[str] = mapped_column(Text)  # JSON of the JobSpec as submitted
    submitter: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))  # pending | approved | rejected | withdrawn
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utc_now)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class NodeStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = private_sqlite(engine)  # the node's first use of its database: create node.db private
        _Base.metadata.create_all(engine)

    def remember_job(self, job_id: str, spec_json: str, submitter: str) -> None:
        """Record (or refresh, on a rerun) the spec this node approved for `job_id`."""
        with Session(self.engine) as session, session.begin():
            job = session.get(NodeJob, job_id)
            if job is None:
                session.add(NodeJob(job_id=job_id, spec=spec_json, submitter=submitter))
            else:
                job.spec, job.submitter = spec_json, submitter

    def job(self, job_id: str) -> NodeJob | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(NodeJob, job_id)

    def set_port(self, job_id: str, port: int) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(NodeJob).where(NodeJob.job_id == job_id).values(port=port))

    def claim(self, job_id: str, task: str, attempt: int) -> bool:
        """Mark (job, task) running; False if it already runs here (the caller must not start it)."""
        values = {"state": "running", "attempt": attempt, "pid": None, "error": None, "started_at": utc_now(),
                  "finished_at": None}
        with Session(self.engine) as session, session.begin():
            changed = session.execute(update(NodeRun).where(NodeRun.job_id == job_id, NodeRun.task == task,
                                                            NodeRun.state != "running").values(**values))
            if changed.rowcount == 1:
                return True
            if session.get(NodeRun, (job_id, task)) is not None:
                return False
        try:
            with Session(self.engine) as session, session.begin():
                session.add(NodeRun(job_id=job_id, task=task, **values))
        except IntegrityError:  # another request inserted the row first
            return False
        return True

    def set_pid(self, job_id: str, task: str, pid: int) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(NodeRun).where(NodeRun.job_id == job_id, NodeRun.task == task).values(pid=pid))

    def finish(self, job_id: str, task: str, state: str, error: str | None) -> None:
        if state not in FINISHED:
            raise ValueError(f"a run finishes as one of {FINISHED}, not {state!r}")
        with Session(self.engine) as session, session.begin():
            session.execute(update(NodeRun).where(NodeRun.job_id == job_id, NodeRun.task == task,
                                                  NodeRun.state == "running")
                            .values(state=state, error=error, finished_at=utc_now()))

    def run(self, job_id: str, task: str) -> NodeRun | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(NodeRun, (job_id, task))

    def running(self) -> list[NodeRun]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(select(NodeRun).where(NodeRun.state == "running")))

    def fail_interrupted(self, reason: str) -> int:
        """On start-up: runs left 'running' by a previous node process lost their worker; fail them."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(update(NodeRun).where(NodeRun.state == "running")
                                     .values(state="failed", error=reason, finished_at=utc_now()))
            return result.rowcount

    # ---- approvals by an operator ----------------------------------------------------------------
    def add_pending(self, job_id: str, spec_json: str, submitter: str, limit: int) -> bool:
        """Record a job as waiting for an operator (again, if it was decided before: a new submission);
        False when `limit` jobs already wait."""
        with Session(self.engine) as session, session.begin():
            waiting = session.scalar(select(func.count()).select_from(NodeApproval)
                                     .where(NodeApproval.state == "pending")) or 0
            if waiting >= limit:  # (count_pending's query, in this transaction)
                return False
            session.merge(NodeApproval(job_id=job_id, spec=spec_json, submitter=submitter, state="pending",
                                       decided_by=None, reason="", created_at=utc_now(), decided_at=None))
            return True

    def approval(self, job_id: str) -> NodeApproval | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(NodeApproval, job_id)

    def pending(self, limit: int | None = None) -> list[NodeApproval]:
        """Jobs waiting for an operator, oldest first."""
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(NodeApproval).where(NodeApproval.state == "pending").order_by(NodeApproval.created_at)
            return list(session.scalars(query.limit(limit)))

    def count_pending(self) -> int:
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count()).select_from(NodeApproval)
                                      .where(NodeApproval.state == "pending")) or 0)

    def decide(self, job_id: str, state: str, by: str, reason: str) -> bool:
        """Move a pending job to `state` (approved, rejected or withdrawn); False if it was not pending (decided
        already). An approval records the job (as `remember_job`) in the same transaction, so whoever reads
        "approved" finds the job there."""
        with Session(self.engine) as session, session.begin():
            changed = session.execute(update(NodeApproval).where(NodeApproval.job_id == job_id,
                                                                 NodeApproval.state == "pending")
                                      .values(state=state, decided_by=by, reason=reason, decided_at=utc_now()))
            if changed.rowcount != 1:
                return False
            if state == "approved":
                approval = session.get(NodeApproval, job_id)
                session.merge(NodeJob(job_id=job_id, spec=approval.spec, submitter=approval.submitter))
            return True

    def count_pending_of(self, submitter: str) -> int:
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count()).select_from(NodeApproval)
                                      .where(NodeApproval.state == "pending", NodeApproval.submitter == submitter))
                       or 0)
