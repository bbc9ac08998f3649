"""The model registry in the coordinator's database: which model came from which job and task, trained
by which parties, with which metrics, under a name with increasing versions.

It holds metadata only. Each party's part of a model stays in that party's node storage
(``<storage>/artifacts/<job>/<party>/<task>/``); an export here is the metadata document, and a party
exports its own part at its node (``sharedml node export``), where its policy decides.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

from sqlalchemy import DateTime, Engine, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

EXPORT_FORMAT = "sharedml-model/1"


class RegistryError(ValueError):
    """An unknown model, or an import document that is not a model export."""


class _Base(DeclarativeBase):
    pass


class ModelRecord(_Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(200))
    component: Mapped[str] = mapped_column(String(200))
    parties: Mapped[str] = mapped_column(Text)  # JSON list
    metrics: Mapped[str] = mapped_column(Text)  # JSON {party: [metric records]}
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    imported_from: Mapped[str | None] = mapped_column(String(32), nullable=True)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "version": self.version, "job_id": self.job_id, "task": self.task,
                "component": self.component, "parties": json.loads(self.parties), "metrics": json.loads(self.metrics),
                "created_at": self.created_at.isoformat(), "imported_from": self.imported_from,
                "parts": {party: f"<storage>/artifacts/{self.job_id}/{party}/{self.task}/"
                          for party in json.loads(self.parties)}}


class Registry:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        _Base.metadata.create_all(engine)

    def register(self, name: str, job_id: str, task: str, component: str, parties: list[str],
                 metrics: dict[str, Any], imported_from: str | None = None) -> ModelRecord:
        """Add the next version of `name`."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            latest = session.scalar(select(func.max(ModelRecord.version)).where(ModelRecord.name == name)) or 0
            record = ModelRecord(id=secrets.token_hex(8), name=name, version=latest + 1, job_id=job_id, task=task,
                                 component=component, parties=json.dumps(parties),
                                 metrics=json.dumps(metrics, default=str),
                                 created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                                 imported_from=imported_from)
            session.add(record)
        return record

    def models(self, name: str | None = None) -> list[ModelRecord]:
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(ModelRecord).order_by(ModelRecord.name, ModelRecord.version)
            if name is not None:
                query = query.where(ModelRecord.name == name)
            return list(session.scalars(query))

    def get(self, ref: str) -> ModelRecord:
        """By id, by ``name:version``, or by name (its latest version)."""
        name, _, version = ref.partition(":")
        with Session(self.engine, expire_on_commit=False) as session:
            record = session.get(ModelRecord, ref)
            if record is None:
                query = select(ModelRecord).where(ModelRecord.name == name)
                if version:
                    if not version.isdigit():
                        raise RegistryError(f"model reference {ref!r}: the version after ':' must be a number")
                    query = query.where(ModelRecord.version == int(version))
                record = session.scalars(query.order_by(ModelRecord.version.desc()).limit(1)).first()
        if record is None:
            raise RegistryError(f"no model {ref!r} in the registry; list them with `sharedml model list`")
        return record

    def export(self, ref: str) -> dict[str, Any]:
        return {"format": EXPORT_FORMAT, "model": self.get(ref).to_json()}

    @staticmethod
    def check_export(document: Any) -> dict[str, Any]:
        """The `model` of an export document, or RegistryError; what it claims is for the caller to verify."""
        if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT \
                or not isinstance(document.get("model"), dict):
            raise RegistryError(f"not a model export: expected {{'format': '{EXPORT_FORMAT}', 'model': {{...}}}}")
        model = document["model"]
        missing = [key for key in ("id", "name", "job_id", "task") if not isinstance(model.get(key), str)]
        if missing:
            raise RegistryError(f"model export lacks text field(s) {', '.join(missing)}")
        if not 0 < len(model["name"]) <= 200:
            raise RegistryError("model export: `name` must have 1 to 200 characters")
        return model

    def refers_to(self, job_id: str, task: str) -> bool:
        """Whether any entry (an import included) still names this job's task, whose parts must then stay."""
        with Session(self.engine) as session:
            query = select(ModelRecord.id).where(ModelRecord.job_id == job_id, ModelRecord.task == task).limit(1)
            return session.scalar(query) is not None

    def delete(self, ref: str) -> ModelRecord:
        record = self.get(ref)
        with Session(self.engine) as session, session.begin():
            session.delete(session.get(ModelRecord, record.id))
        return record
