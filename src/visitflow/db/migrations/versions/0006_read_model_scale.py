"""read model at a year's size: indexes that serve each list's filter and order, dashboard columns and rollups

Revision ID: 0006_read_model_scale
Revises: 0008
Create Date: 2026-11-29
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006_read_model_scale'
down_revision = '0008'
branch_labels = None
depends_on = None

VISIT_INDEXES = {
    'ix_visit_scheduled_start_id': ['scheduled_start', 'id'],
    'ix_visit_state_scheduled_start_id': ['state', 'scheduled_start', 'id'],
    'ix_visit_state_payer_scheduled_start_id': ['state', 'payer_id', 'scheduled_start', 'id'],
    'ix_visit_clinician_scheduled_start_id': ['clinician_id', 'scheduled_start', 'id'],
    'ix_visit_payer_scheduled_start_id': ['payer_id', 'scheduled_start', 'id'],
    'ix_visit_patient_scheduled_start_id': ['patient_id', 'scheduled_start', 'id'],
    'ix_visit_state_payer_service_date_id': ['state', 'payer_id', 'service_date', 'id', 'billable_units'],
}
HOLD_INDEXES = {
    'ix_visithold_rule_opened_id': ['rule_id', 'opened_at', 'id'],
    'ix_visithold_role_approvable_opened_id': ['role', 'approvable', 'opened_at', 'id'],
}
TASK_INDEXES = {
    'ix_visittask_role_escalated_due_id': ['role', 'escalated', 'due_at', 'id'],
    'ix_visittask_kind_escalated_due_id': ['kind', 'escalated', 'due_at', 'id'],
}


def upgrade() -> None:
    with op.batch_alter_table('visit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('note_submitted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('sign_waiting_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('ready_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    for table, indexes in (('visit', VISIT_INDEXES), ('visithold', HOLD_INDEXES), ('visittask', TASK_INDEXES)):
        for name, columns in indexes.items():
            op.create_index(name, table, columns, unique=False)
    op.create_table('visitrollup',
    sa.Column('figure', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('at', sa.Integer(), nullable=False),
    sa.Column('bucket', sa.Integer(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('figure', 'key', 'at', 'bucket')
    )
    # Existing visits: the new columns and the rollups are filled by `visitflow rebuild-rollups` (the columns
    # are copied out of each snapshot there), which an upgrade of a populated database runs once.


def downgrade() -> None:
    op.drop_table('visitrollup')
    for table, indexes in (('visittask', TASK_INDEXES), ('visithold', HOLD_INDEXES), ('visit', VISIT_INDEXES)):
        for name in indexes:
            op.drop_index(name, table_name=table)
    with op.batch_alter_table('visit', schema=None) as batch_op:
        batch_op.drop_column('ready_since')
        batch_op.drop_column('sign_waiting_since')
        batch_op.drop_column('note_submitted_at')
