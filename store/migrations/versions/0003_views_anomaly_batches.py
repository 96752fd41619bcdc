"""Read-only BI views (v_transactions, v_endpoints, v_findings) and the anomaly batch ledger.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Plain SQL both SQLite and PostgreSQL accept; no bodies (binary) in the views.
V_TRANSACTIONS = """
CREATE VIEW v_transactions AS
SELECT t.conn_id, t.trans_depth, t.run_id, r.source, t.ts, t.ts_end,
       c.client_ip, c.client_port, c.server_ip, c.server_port,
       t.method, t.host, t.uri, t.version, t.status, t.reason,
       t.request_body_len, t.response_body_len,
       t.request_content_type, t.response_content_type, t.user_agent,
       t.anomalies, t.partial
FROM transactions t
JOIN capture_runs r ON r.id = t.run_id
LEFT JOIN connections c ON c.conn_id = t.conn_id
"""

V_ENDPOINTS = """
CREATE VIEW v_endpoints AS
SELECT host, method, path_template,
       SUM(count) AS count, MIN(first_seen) AS first_seen, MAX(last_seen) AS last_seen,
       COUNT(run_id) AS runs
FROM endpoint_observations
GROUP BY host, method, path_template
"""

V_FINDINGS = """
CREATE VIEW v_findings AS
SELECT f.id, f.kind, f.severity, f.owasp, f.confidence,
       f.host, f.method, f.path_template, f.client_ip, f.principal, f.window_start,
       o.count, o.first_seen, o.last_seen, o.runs,
       f.evidence, f.remediation, f.status
FROM findings f
JOIN (SELECT finding_id, SUM(count) AS count, MIN(ts_first) AS first_seen,
             MAX(ts_last) AS last_seen, COUNT(run_id) AS runs
      FROM finding_occurrences GROUP BY finding_id) o ON o.finding_id = f.id
"""


def upgrade() -> None:
    """Create the ledger table and the three views."""
    op.create_table(
        "anomaly_batches",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("batch_key", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "batch_key", name=op.f("pk_anomaly_batches")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["capture_runs.id"],
            name=op.f("fk_anomaly_batches_run_id_capture_runs"),
            ondelete="CASCADE",
        ),
    )
    op.execute(V_TRANSACTIONS)
    op.execute(V_ENDPOINTS)
    op.execute(V_FINDINGS)


def downgrade() -> None:
    """Drop the views and the ledger."""
    for view in ("v_findings", "v_endpoints", "v_transactions"):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_table("anomaly_batches")
