"""alert destinations: monitor webhook_format, severity, PagerDuty routing key;
the format of each outbox row

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-06 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # server defaults fill the rows that exist: every monitor so far sent the standard
    # signed webhook at the default severity.
    with op.batch_alter_table("monitors") as batch:
        batch.add_column(
            sa.Column("webhook_format", sa.String(16), nullable=False, server_default="standard")
        )
        batch.add_column(
            sa.Column("severity", sa.String(16), nullable=False, server_default="warning")
        )
        batch.add_column(sa.Column("routing_key_enc", sa.Text(), nullable=True))
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(
            sa.Column("format", sa.String(16), nullable=False, server_default="standard")
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("format")
    with op.batch_alter_table("monitors") as batch:
        batch.drop_column("routing_key_enc")
        batch.drop_column("severity")
        batch.drop_column("webhook_format")
