"""sensor_health: one row per health interval of a live capture run.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COUNTERS = ("packets", "bytes", "kernel_packets", "kernel_drops", "flows", "transactions",
            "records_written", "records_dropped", "rss_bytes")


def upgrade() -> None:
    """Create the table and its (run_id, ts) index."""
    op.create_table(
        "sensor_health",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("interval_s", sa.Double(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTERS),
        sa.Column("capture_loss", sa.Double(), nullable=False),
        sa.Column("worker_restarts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sensor_health")),
        sa.ForeignKeyConstraint(["run_id"], ["capture_runs.id"],
                                name=op.f("fk_sensor_health_run_id_capture_runs"),
                                ondelete="CASCADE"),
    )
    with op.batch_alter_table("sensor_health") as batch:
        batch.create_index("ix_sensor_health_run_id_ts", ["run_id", "ts"])


def downgrade() -> None:
    """Drop the table."""
    op.drop_table("sensor_health")
