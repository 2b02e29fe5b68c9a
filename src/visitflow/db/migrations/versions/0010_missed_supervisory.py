"""Missed and late visits (MV-01/02): the payer's late-alert minutes and missed-visit notice, the missed reason on
the read model; aide supervision (SUP-01): one record per supervised patient

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('late_alert_minutes', sa.Integer(), server_default='30', nullable=True))
        batch_op.add_column(sa.Column('missed_visit_notice_to', sqlmodel.sql.sqltypes.AutoString(length=120),
                                      nullable=True))

    with op.batch_alter_table('visit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('missed_reason', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))

    op.create_table(
        'patientsupervision',
        sa.Column('care', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column('supervising_clinician_id', sa.Integer(), nullable=True),
        sa.Column('last_visit_on', sa.Date(), nullable=True),
        sa.Column('patient_id', sa.Integer(), nullable=False),
        sa.Column('last_visit_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('since', sa.Date(), nullable=False),
        sa.Column('interval_days', sa.Integer(), nullable=False),
        sa.Column('prompt_days', sa.Integer(), nullable=False),
        sa.Column('due_on', sa.Date(), nullable=False),
        sa.Column('prompted_for', sa.Date(), nullable=True),
        sa.Column('lapsed_for', sa.Date(), nullable=True),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['patient_id'], ['patient.id']),
        sa.ForeignKeyConstraint(['supervising_clinician_id'], ['clinician.id']),
        sa.PrimaryKeyConstraint('patient_id'),
    )
    with op.batch_alter_table('patientsupervision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_patientsupervision_due_on'), ['due_on'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('patientsupervision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_patientsupervision_due_on'))
    op.drop_table('patientsupervision')
    with op.batch_alter_table('visit', schema=None) as batch_op:
        batch_op.drop_column('missed_reason')
    with op.batch_alter_table('payer', schema=None) as batch_op:
        batch_op.drop_column('missed_visit_notice_to')
        batch_op.drop_column('late_alert_minutes')
