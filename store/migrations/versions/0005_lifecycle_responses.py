"""Finding lifecycle (who/why/when, regressions, verified) and automated-response ledger.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

GROUP_PARTS = ("kind", "host", "method", "path_template", "client_ip", "principal")


def group_key(parts: list[str]) -> str:
    """sha256 of a finding's key without its window (same encoding as the store's keys)."""
    material = json.dumps(parts, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(material.encode("ascii")).hexdigest()


def upgrade() -> None:
    """Add the lifecycle columns, backfill group_key, create history and response tables."""
    # Plain ADD COLUMN (no batch copy): the v_findings view depends on this table.
    op.add_column("findings", sa.Column("group_key", sa.String(64), nullable=True))
    op.add_column("findings", sa.Column("status_actor", sa.Text(), nullable=True))
    op.add_column("findings", sa.Column("status_reason", sa.Text(), nullable=True))
    op.add_column("findings", sa.Column("status_at", sa.Double(), nullable=True))
    op.add_column("findings", sa.Column("regression_of", sa.BigInteger(), nullable=True))
    op.add_column("findings", sa.Column("verified", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    op.create_index("ix_findings_group_key", "findings", ["group_key"])
    conn = op.get_bind()
    findings = sa.table("findings", sa.column("id"), sa.column("group_key"),
                        *(sa.column(name) for name in GROUP_PARTS))
    rows = conn.execute(sa.select(findings.c.id, *(findings.c[n] for n in GROUP_PARTS)))
    updates = [{"fid": row[0], "gk": group_key([str(v or "") for v in row[1:]])} for row in rows]
    if updates:
        conn.execute(
            findings.update().where(findings.c.id == sa.bindparam("fid"))
            .values(group_key=sa.bindparam("gk")),
            updates,
        )
    op.create_table(
        "finding_status_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("finding_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("old_status", sa.String(16), nullable=True),
        sa.Column("new_status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finding_status_history")),
        sa.ForeignKeyConstraint(["finding_id"], ["findings.id"],
                                name=op.f("fk_finding_status_history_finding_id_findings"),
                                ondelete="CASCADE"),
    )
    op.create_index("ix_finding_status_history_finding_id", "finding_status_history",
                    ["finding_id"])
    op.create_table(
        "response_firings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fire_key", sa.String(64), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("first_fired", sa.Double(), nullable=False),
        sa.Column("last_fired", sa.Double(), nullable=False),
        sa.Column("fired_count", sa.Integer(), nullable=False),
        sa.Column("finding_ids", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("payload", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("outcome", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_response_firings")),
        sa.UniqueConstraint("fire_key", name=op.f("uq_response_firings_fire_key")),
    )


def downgrade() -> None:
    """Drop the tables and the columns."""
    op.drop_table("response_firings")
    op.drop_table("finding_status_history")
    op.drop_index("ix_findings_group_key", table_name="findings")
    for name in ("verified", "regression_of", "status_at", "status_reason", "status_actor",
                 "group_key"):
        op.drop_column("findings", name)
