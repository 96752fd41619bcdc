"""ORM tables of the store.  These classes never leave the store package."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false

# Deterministic constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit row ids on PostgreSQL; SQLite only auto-increments a column typed INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")

RUN_STATUSES = ("running", "complete", "failed")


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CaptureRun(Base):
    """One processing of one capture file or interface."""

    __tablename__ = "capture_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'complete', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    source_sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[float] = mapped_column(Double)  # wall clock, from the caller
    finished_at: Mapped[float | None] = mapped_column(Double)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    packets: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    flows: Mapped[int] = mapped_column(BigInteger, default=0)
    transactions: Mapped[int] = mapped_column(BigInteger, default=0)
    stats: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    ts_first: Mapped[float | None] = mapped_column(Double)  # packet time
    ts_last: Mapped[float | None] = mapped_column(Double)


class Connection(Base):
    """One TCP connection; conn_id is the natural key."""

    __tablename__ = "connections"

    conn_id: Mapped[str] = mapped_column(Text, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("capture_runs.id"), index=True)
    # Endpoints are unknown when only a ConnectionClosed was seen.
    client_ip: Mapped[str | None] = mapped_column(Text)
    client_port: Mapped[int | None] = mapped_column(Integer)
    server_ip: Mapped[str | None] = mapped_column(Text)
    server_port: Mapped[int | None] = mapped_column(Integer)
    ts_start: Mapped[float] = mapped_column(Double)
    ts_end: Mapped[float | None] = mapped_column(Double)
    partial: Mapped[bool] = mapped_column(Boolean, default=False)
    close_reason: Mapped[str | None] = mapped_column(Text)
    orig_bytes: Mapped[int | None] = mapped_column(BigInteger)
    resp_bytes: Mapped[int | None] = mapped_column(BigInteger)
    orig_missed: Mapped[int | None] = mapped_column(BigInteger)
    resp_missed: Mapped[int | None] = mapped_column(BigInteger)
    packets: Mapped[int | None] = mapped_column(BigInteger)


class Transaction(Base):
    """One HTTP request/response pair; (conn_id, trans_depth) is the natural key."""

    __tablename__ = "transactions"
    __table_args__ = (
        UniqueConstraint("conn_id", "trans_depth"),
        Index("ix_transactions_order", "ts", "conn_id", "trans_depth"),
        Index("ix_transactions_run_order", "run_id", "ts", "conn_id", "trans_depth"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conn_id: Mapped[str] = mapped_column(Text)
    trans_depth: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int] = mapped_column(ForeignKey("capture_runs.id"))
    ts: Mapped[float] = mapped_column(Double)
    ts_end: Mapped[float | None] = mapped_column(Double)
    method: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(Text)
    uri: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(Text)
    status: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    resp_version: Mapped[str | None] = mapped_column(Text)
    info_code: Mapped[int | None] = mapped_column(Integer)
    request_headers: Mapped[str | None] = mapped_column(Text)  # JSON [[name, value], ...]
    response_headers: Mapped[str | None] = mapped_column(Text)
    request_body_len: Mapped[int | None] = mapped_column(BigInteger)
    response_body_len: Mapped[int | None] = mapped_column(BigInteger)
    request_body_complete: Mapped[bool | None] = mapped_column(Boolean)
    response_body_complete: Mapped[bool | None] = mapped_column(Boolean)
    request_body_sha256: Mapped[str | None] = mapped_column(String(64))
    response_body_sha256: Mapped[str | None] = mapped_column(String(64))
    request_body_head: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_body_head: Mapped[bytes | None] = mapped_column(LargeBinary)
    user_agent: Mapped[str | None] = mapped_column(Text)
    request_content_type: Mapped[str | None] = mapped_column(Text)
    response_content_type: Mapped[str | None] = mapped_column(Text)
    anomalies: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of kinds
    partial: Mapped[bool] = mapped_column(Boolean, default=False)


class AnomalyRow(Base):
    """One stored anomaly; anomaly_key (a sha1 of its content) makes re-inserts no-ops."""

    __tablename__ = "anomalies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    anomaly_key: Mapped[str] = mapped_column(String(40), unique=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("capture_runs.id"), index=True)
    kind: Mapped[str] = mapped_column(Text, index=True)
    ts: Mapped[float] = mapped_column(Double)
    conn_id: Mapped[str | None] = mapped_column(Text, index=True)
    direction: Mapped[int | None] = mapped_column(SmallInteger)  # Direction value
    detail: Mapped[str] = mapped_column(Text, default="")
    security: Mapped[bool] = mapped_column(Boolean, default=False)


class AnomalyCount(Base):
    """Exact number of anomalies per run and kind, whatever rows are kept."""

    __tablename__ = "anomaly_counts"

    run_id: Mapped[int] = mapped_column(ForeignKey("capture_runs.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


# ----------------------------------------------------------------- analysis results (0002)
# Wire-derived key text can be megabytes long, beyond what a PostgreSQL btree entry holds
# (about 2.7 KB), so natural keys are enforced through a sha256 of the key columns, as
# anomalies do with anomaly_key.

SEVERITIES = ("info", "low", "medium", "high", "critical")


class EndpointObservation(Base):
    """One run's view of one API endpoint; a re-analysis of the run replaces its rows."""

    __tablename__ = "endpoint_observations"
    __table_args__ = (UniqueConstraint("run_id", "endpoint_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("capture_runs.id", ondelete="CASCADE"))
    endpoint_key: Mapped[str] = mapped_column(String(64))  # sha256 of host, method, path
    host: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(Text)
    path_template: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(BigInteger)
    first_seen: Mapped[float] = mapped_column(Double)  # packet time
    last_seen: Mapped[float] = mapped_column(Double)
    doc: Mapped[str] = mapped_column(Text, default="{}")  # JSON object, the inventory's


class FindingRow(Base):
    """One finding per (kind, endpoint, client, principal, window); counts live in occurrences.

    Absent endpoint, client and principal are stored as '' so the natural key is total.
    count, ts_first and ts_last cache the sums over finding_occurrences at the last write.
    """

    __tablename__ = "findings"
    __table_args__ = (
        CheckConstraint(
            "severity IN ('info', 'low', 'medium', 'high', 'critical')", name="severity"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    finding_key: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the key
    kind: Mapped[str] = mapped_column(Text, index=True)
    host: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(Text)
    path_template: Mapped[str] = mapped_column(Text)
    client_ip: Mapped[str] = mapped_column(Text)
    principal: Mapped[str] = mapped_column(Text)
    window_start: Mapped[float] = mapped_column(Double)
    severity: Mapped[str] = mapped_column(String(16))
    owasp: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Double)
    ts_first: Mapped[float] = mapped_column(Double)
    ts_last: Mapped[float] = mapped_column(Double)
    count: Mapped[int] = mapped_column(BigInteger)
    evidence: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    explanation: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of objects
    remediation: Mapped[str] = mapped_column(Text, default="")
    transactions: Mapped[str] = mapped_column(Text, default="[]")  # JSON [[conn_id, depth]]
    status: Mapped[str] = mapped_column(String(16), default="open")
    first_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("capture_runs.id", ondelete="SET NULL")
    )
    last_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("capture_runs.id", ondelete="SET NULL")
    )
    updated_at: Mapped[float] = mapped_column(Double)  # wall clock
    # The finding's key without its window: one attack recurring in later windows shares it,
    # so a resolved finding seen again can be re-opened as a regression.
    group_key: Mapped[str | None] = mapped_column(String(64), index=True)
    status_actor: Mapped[str | None] = mapped_column(Text)
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_at: Mapped[float | None] = mapped_column(Double)  # wall clock
    regression_of: Mapped[int | None] = mapped_column(BigInteger)
    verified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class FindingStatusChange(Base):
    """Audit trail of a finding's status: who changed it, from what, to what, and why."""

    __tablename__ = "finding_status_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    finding_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("findings.id", ondelete="CASCADE"), index=True
    )
    ts: Mapped[float] = mapped_column(Double)  # wall clock
    actor: Mapped[str] = mapped_column(Text)
    old_status: Mapped[str | None] = mapped_column(String(16))
    new_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")


class ResponseFiring(Base):
    """Ledger of automated responses: one row per (rule, action, target), so nothing fires twice."""

    __tablename__ = "response_firings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fire_key: Mapped[str] = mapped_column(String(64), unique=True)
    rule: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    first_fired: Mapped[float] = mapped_column(Double)
    last_fired: Mapped[float] = mapped_column(Double)
    fired_count: Mapped[int] = mapped_column(Integer)
    finding_ids: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    payload: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    outcome: Mapped[str] = mapped_column(Text, default="", server_default="")


class FindingOccurrence(Base):
    """One run's contribution to a finding; re-writing the run replaces it, never adds."""

    __tablename__ = "finding_occurrences"

    finding_id: Mapped[int] = mapped_column(
        ForeignKey("findings.id", ondelete="CASCADE"), primary_key=True
    )
    run_id: Mapped[int] = mapped_column(
        ForeignKey("capture_runs.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    count: Mapped[int] = mapped_column(BigInteger)
    ts_first: Mapped[float] = mapped_column(Double)
    ts_last: Mapped[float] = mapped_column(Double)


class DetectorModel(Base):
    """A fitted detection model as a JSON document (never a pickle); latest id wins."""

    __tablename__ = "detector_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, index=True)
    kind: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Double)  # wall clock
    params: Mapped[str] = mapped_column(Text)  # JSON object


class AnomalyBatch(Base):
    """Ledger of anomaly batches already counted for a run: re-writing one counts nothing.

    Rows are sampled (see Store.write_batch) so counts cannot come from inserted rows.
    """

    __tablename__ = "anomaly_batches"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("capture_runs.id", ondelete="CASCADE"), primary_key=True
    )
    batch_key: Mapped[str] = mapped_column(String(64), primary_key=True)


class SensorHealth(Base):
    """One health interval of a live capture run: what the sensor saw, dropped and used."""

    __tablename__ = "sensor_health"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("capture_runs.id", ondelete="CASCADE"), nullable=False
    )
    ts: Mapped[float] = mapped_column(Double, nullable=False)  # wall clock, end of interval
    interval_s: Mapped[float] = mapped_column(Double, nullable=False)
    packets: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    kernel_packets: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    kernel_drops: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    flows: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    transactions: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    records_written: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    records_dropped: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rss_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    capture_loss: Mapped[float] = mapped_column(Double, nullable=False, default=0.0)
    worker_restarts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    __table_args__ = (Index("ix_sensor_health_run_id_ts", "run_id", "ts"),)
