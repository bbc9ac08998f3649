"""A node's append-only audit log of every use of its datasets (and every approval, denial, export).

Each record carries the SHA-256 of the previous record and of its own fields, so editing or deleting
a record in the database breaks the chain at that point; ``verify`` finds it. The code never updates
or deletes records.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from dataclasses import dataclass

from sqlalchemy import DateTime, Engine, Integer, String, Text, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

GENESIS = "0" * 64
APPEND_TRIES = 5


class _Base(DeclarativeBase):
    pass


class AuditRecord(_Base):
    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime)
    event: Mapped[str] = mapped_column(String(40))  # approved | denied | use | export | delete
    actor: Mapped[str] = mapped_column(String(200))  # certificate name of whoever asked
    job_id: Mapped[str] = mapped_column(String(200), default="")
    task: Mapped[str] = mapped_column(String(200), default="")
    dataset: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)  # a chain never forks
    hash: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True)
class AuditEntry:
    event: str
    actor: str
    job_id: str = ""
    task: str = ""
    dataset: str = ""
    detail: str = ""


def _digest(prev_hash: str, at: dt.datetime, entry: AuditEntry) -> str:
    fields = [prev_hash, at.isoformat(), entry.event, entry.actor, entry.job_id, entry.task, entry.dataset,
              entry.detail]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


class AuditLog:
    """Appends chained records to the node's database; one writer (the node process) at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        _Base.metadata.create_all(engine)

    def append(self, entry: AuditEntry) -> None:
        """Add a record after the last one; if another process appended meanwhile, chain after that one."""
        for attempt in range(APPEND_TRIES):
            try:
                with self._lock, Session(self.engine) as session, session.begin():
                    last = session.scalars(select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(1)).first()
                    prev_hash = last.hash if last is not None else GENESIS
                    at = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
                    session.add(AuditRecord(at=at, prev_hash=prev_hash, hash=_digest(prev_hash, at, entry),
                                            **entry.__dict__))
                return
            except IntegrityError:
                if attempt == APPEND_TRIES - 1:
                    raise

    def records(self, job_id: str | None = None) -> list[AuditRecord]:
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(AuditRecord).order_by(AuditRecord.seq)
            if job_id is not None:
                query = query.where(AuditRecord.job_id == job_id)
            return list(session.scalars(query))

    def page(self, limit: int, offset: int = 0) -> tuple[int, list[AuditRecord]]:
        """(how many records there are, `limit` of them newest first after skipping `offset`): a page to show."""
        with Session(self.engine, expire_on_commit=False) as session:
            total = session.scalar(select(func.count()).select_from(AuditRecord)) or 0
            query = select(AuditRecord).order_by(AuditRecord.seq.desc()).offset(offset).limit(limit)
            return int(total), list(session.scalars(query))

    def verify(self) -> int | None:
        """The sequence number of the first record that breaks the chain, or None if it is intact."""
        prev_hash = GENESIS
        for record in self.records():
            entry = AuditEntry(record.event, record.actor, record.job_id, record.task, record.dataset, record.detail)
            if record.prev_hash != prev_hash or record.hash != _digest(prev_hash, record.at, entry):
                return record.seq
            prev_hash = record.hash
        return None
