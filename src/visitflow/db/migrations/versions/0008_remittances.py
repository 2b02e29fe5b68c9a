"""835 remittances and how each of their lines was applied; the money rollups (receivables by day, denials)

Revision ID: 0008
Revises: 0005
Create Date: 2026-11-29
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'remittance',
        sa.Column('payer_name', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column('payer_code', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
        sa.Column('trace_number', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column('payment_method', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column('amount_cents', sa.Integer(), nullable=False),
        sa.Column('paid_on', sa.Date(), nullable=True),
        sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('imported_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('imported_by', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column('claims_matched', sa.Integer(), nullable=False),
        sa.Column('lines_paid', sa.Integer(), nullable=False),
        sa.Column('lines_denied', sa.Integer(), nullable=False),
        sa.Column('lines_unmatched', sa.Integer(), nullable=False),
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('content', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('digest'),
    )
    with op.batch_alter_table('remittance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_remittance_trace_number'), ['trace_number'], unique=False)

    op.create_table(
        'remittanceline',
        sa.Column('remittance_id', sa.Integer(), nullable=False),
        sa.Column('claim_control_number', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column('payer_claim_number', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
        sa.Column('claim_id', sa.Integer(), nullable=True),
        sa.Column('claim_line_id', sa.Integer(), nullable=True),
        sa.Column('visit_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('hcpcs', sqlmodel.sql.sqltypes.AutoString(length=48), nullable=True),
        sa.Column('service_date', sa.Date(), nullable=True),
        sa.Column('charge_cents', sa.Integer(), nullable=False),
        sa.Column('paid_cents', sa.Integer(), nullable=False),
        sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('reasons', sa.JSON(), nullable=False),
        sa.Column('problem', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('denial_kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column('returned_to_work_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['claim_id'], ['claim.id']),
        sa.ForeignKeyConstraint(['claim_line_id'], ['claimline.id']),
        sa.ForeignKeyConstraint(['remittance_id'], ['remittance.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('remittanceline', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_remittanceline_claim_line_id'), ['claim_line_id'], unique=False)
        batch_op.create_index('ix_remittanceline_remittance_id_id', ['remittance_id', 'id'], unique=False)


    op.create_table(
        'claimagingday',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('open_cents', sa.Integer(), nullable=False),
        sa.Column('open_claims', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('day'),
    )
    op.create_table(
        'denialmonth',
        sa.Column('month', sa.Date(), nullable=False),
        sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column('cents', sa.Integer(), nullable=False),
        sa.Column('lines', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('month', 'code'),
    )


def downgrade() -> None:
    op.drop_table('denialmonth')
    op.drop_table('claimagingday')
    op.drop_table('remittanceline')
    op.drop_table('remittance')
