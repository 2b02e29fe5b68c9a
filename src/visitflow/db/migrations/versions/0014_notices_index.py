"""Notices read newest first by role and by clinician (the notices page and the nav's count)

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 02:40:00
"""
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index('ix_notification_role_created_at_id', ['role', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_notification_clinician_created_at_id', ['clinician_id', 'created_at', 'id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_clinician_created_at_id')
        batch_op.drop_index('ix_notification_role_created_at_id')
