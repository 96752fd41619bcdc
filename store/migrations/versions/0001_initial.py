"""Initial schema: capture runs, connections, transactions, anomalies and their counts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Written out here rather than imported from models: a migration is a frozen snapshot.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create every table of the first schema."""
    op.create_table(
        "capture_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("packets", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("flows", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.Column("stats", sa.Text(), nullable=False),
        sa.Column("ts_first", sa.Double(), nullable=True),
        sa.Column("ts_last", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_runs")),
        sa.CheckConstraint(
            "status IN ('running', 'complete', 'failed')", name=op.f("ck_capture_runs_status")
        ),
    )
    op.create_index(
        op.f("ix_capture_runs_source_sha256"), "capture_runs", ["source_sha256"], unique=False
    )

    op.create_table(
        "connections",
        sa.Column("conn_id", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("client_ip", sa.Text(), nullable=True),
        sa.Column("client_port", sa.Integer(), nullable=True),
        sa.Column("server_ip", sa.Text(), nullable=True),
        sa.Column("server_port", sa.Integer(), nullable=True),
        sa.Column("ts_start", sa.Double(), nullable=False),
        sa.Column("ts_end", sa.Double(), nullable=True),
        sa.Column("partial", sa.Boolean(), nullable=False),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("orig_bytes", sa.BigInteger(), nullable=True),
        sa.Column("resp_bytes", sa.BigInteger(), nullable=True),
        sa.Column("orig_missed", sa.BigInteger(), nullable=True),
        sa.Column("resp_missed", sa.BigInteger(), nullable=True),
        sa.Column("packets", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("conn_id", name=op.f("pk_connections")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["capture_runs.id"], name=op.f("fk_connections_run_id_capture_runs")
        ),
    )
    op.create_index(op.f("ix_connections_run_id"), "connections", ["run_id"], unique=False)

    op.create_table(
        "transactions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("conn_id", sa.Text(), nullable=False),
        sa.Column("trans_depth", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("ts_end", sa.Double(), nullable=True),
        sa.Column("method", sa.Text(), nullable=True),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("uri", sa.Text(), nullable=True),
        sa.Column("version", sa.Text(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("resp_version", sa.Text(), nullable=True),
        sa.Column("info_code", sa.Integer(), nullable=True),
        sa.Column("request_headers", sa.Text(), nullable=True),
        sa.Column("response_headers", sa.Text(), nullable=True),
        sa.Column("request_body_len", sa.BigInteger(), nullable=True),
        sa.Column("response_body_len", sa.BigInteger(), nullable=True),
        sa.Column("request_body_complete", sa.Boolean(), nullable=True),
        sa.Column("response_body_complete", sa.Boolean(), nullable=True),
        sa.Column("request_body_sha256", sa.String(64), nullable=True),
        sa.Column("response_body_sha256", sa.String(64), nullable=True),
        sa.Column("request_body_head", sa.LargeBinary(), nullable=True),
        sa.Column("response_body_head", sa.LargeBinary(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("request_content_type", sa.Text(), nullable=True),
        sa.Column("response_content_type", sa.Text(), nullable=True),
        sa.Column("anomalies", sa.Text(), nullable=False),
        sa.Column("partial", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint(
            "conn_id", "trans_depth", name=op.f("uq_transactions_conn_id_trans_depth")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["capture_runs.id"], name=op.f("fk_transactions_run_id_capture_runs")
        ),
    )
    op.create_index(
        "ix_transactions_order", "transactions", ["ts", "conn_id", "trans_depth"], unique=False
    )
    op.create_index(
        "ix_transactions_run_order",
        "transactions",
        ["run_id", "ts", "conn_id", "trans_depth"],
        unique=False,
    )

    op.create_table(
        "anomalies",
        sa.Column("id", BigId, nullable=False),
        sa.Column("anomaly_key", sa.String(40), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("conn_id", sa.Text(), nullable=True),
        sa.Column("direction", sa.SmallInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("security", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anomalies")),
        sa.UniqueConstraint("anomaly_key", name=op.f("uq_anomalies_anomaly_key")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["capture_runs.id"], name=op.f("fk_anomalies_run_id_capture_runs")
        ),
    )
    op.create_index(op.f("ix_anomalies_run_id"), "anomalies", ["run_id"], unique=False)
    op.create_index(op.f("ix_anomalies_kind"), "anomalies", ["kind"], unique=False)
    op.create_index(op.f("ix_anomalies_conn_id"), "anomalies", ["conn_id"], unique=False)

    op.create_table(
        "anomaly_counts",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "kind", name=op.f("pk_anomaly_counts")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["capture_runs.id"], name=op.f("fk_anomaly_counts_run_id_capture_runs")
        ),
    )


def downgrade() -> None:
    """Drop every table of the first schema."""
    op.drop_table("anomaly_counts")
    op.drop_index(op.f("ix_anomalies_conn_id"), table_name="anomalies")
    op.drop_index(op.f("ix_anomalies_kind"), table_name="anomalies")
    op.drop_index(op.f("ix_anomalies_run_id"), table_name="anomalies")
    op.drop_table("anomalies")
    op.drop_index("ix_transactions_run_order", table_name="transactions")
    op.drop_index("ix_transactions_order", table_name="transactions")
    op.drop_table("transactions")
    op.drop_index(op.f("ix_connections_run_id"), table_name="connections")
    op.drop_table("connections")
    op.drop_index(op.f("ix_capture_runs_source_sha256"), table_name="capture_runs")
    op.drop_table("capture_runs")
