"""Analysis results: endpoint observations per run, findings and their occurrences, models.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Written out here rather than imported from models: a migration is a frozen snapshot.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the analysis tables; existing tables and rows are untouched."""
    op.create_table(
        "endpoint_observations",
        sa.Column("id", BigId, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("endpoint_key", sa.String(64), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("path_template", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoint_observations")),
        sa.UniqueConstraint(
            "run_id", "endpoint_key", name=op.f("uq_endpoint_observations_run_id_endpoint_key")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["capture_runs.id"],
            name=op.f("fk_endpoint_observations_run_id_capture_runs"),
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "findings",
        sa.Column("id", BigId, nullable=False),
        sa.Column("finding_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("path_template", sa.Text(), nullable=False),
        sa.Column("client_ip", sa.Text(), nullable=False),
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("window_start", sa.Double(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("owasp", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("ts_first", sa.Double(), nullable=False),
        sa.Column("ts_last", sa.Double(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("remediation", sa.Text(), nullable=False),
        sa.Column("transactions", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("first_run_id", sa.Integer(), nullable=True),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
        sa.UniqueConstraint("finding_key", name=op.f("uq_findings_finding_key")),
        sa.CheckConstraint(
            "severity IN ('info', 'low', 'medium', 'high', 'critical')",
            name=op.f("ck_findings_severity"),
        ),
        sa.ForeignKeyConstraint(
            ["first_run_id"],
            ["capture_runs.id"],
            name=op.f("fk_findings_first_run_id_capture_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["last_run_id"],
            ["capture_runs.id"],
            name=op.f("fk_findings_last_run_id_capture_runs"),
            ondelete="SET NULL",
        ),
    )
    op.create_index(op.f("ix_findings_kind"), "findings", ["kind"], unique=False)

    op.create_table(
        "finding_occurrences",
        sa.Column("finding_id", BigId, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("ts_first", sa.Double(), nullable=False),
        sa.Column("ts_last", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("finding_id", "run_id", name=op.f("pk_finding_occurrences")),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["findings.id"],
            name=op.f("fk_finding_occurrences_finding_id_findings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["capture_runs.id"],
            name=op.f("fk_finding_occurrences_run_id_capture_runs"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        op.f("ix_finding_occurrences_run_id"), "finding_occurrences", ["run_id"], unique=False
    )

    op.create_table(
        "detector_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detector_models")),
    )
    op.create_index(op.f("ix_detector_models_name"), "detector_models", ["name"], unique=False)


def downgrade() -> None:
    """Drop the analysis tables (their rows are lost; 0001's tables are untouched)."""
    op.drop_index(op.f("ix_detector_models_name"), table_name="detector_models")
    op.drop_table("detector_models")
    op.drop_index(op.f("ix_finding_occurrences_run_id"), table_name="finding_occurrences")
    op.drop_table("finding_occurrences")
    op.drop_index(op.f("ix_findings_kind"), table_name="findings")
    op.drop_table("findings")
    op.drop_table("endpoint_observations")
