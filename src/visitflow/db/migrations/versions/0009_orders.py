"""Physician orders (ORD-01..03, AUTH-03); the payer's order settings; holds found by key

Revision ID: 0009
Revises: 0006_read_model_scale
Create Date: 2026-11-29
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0006_read_model_scale'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'physician_order',
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('patient_id', sa.Integer(), nullable=False),
        sa.Column('practitioner_npi', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column('practitioner_name', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column('frequencies', sa.JSON(), nullable=False),
        sa.Column('effective_from', sa.Date(), nullable=False),
        sa.Column('effective_to', sa.Date(), nullable=True),
        sa.Column('sent_on', sa.Date(), nullable=False),
        sa.Column('document_ref', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column('signed_on', sa.Date(), nullable=True),
        sa.Column('signature_recorded_by', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column('returned_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('reminders_sent', sa.Integer(), nullable=False),
        sa.Column('escalated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['patient_id'], ['patient.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_physician_order_patient_from', 'physician_order', ['patient_id', 'effective_from'],
                    unique=False)
    op.create_index('ix_physician_order_status_sent', 'physician_order', ['status', 'sent_on', 'id'], unique=False)
    with op.batch_alter_table('payer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('orders_required', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('signed_orders_before_billing', sa.Boolean(),
                                      server_default=sa.text('false'), nullable=False))
    op.create_index('ix_visithold_key', 'visithold', ['key'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_visithold_key', table_name='visithold')
    with op.batch_alter_table('payer', schema=None) as batch_op:
        batch_op.drop_column('signed_orders_before_billing')
        batch_op.drop_column('orders_required')
    op.drop_index('ix_physician_order_status_sent', table_name='physician_order')
    op.drop_index('ix_physician_order_patient_from', table_name='physician_order')
    op.drop_table('physician_order')
