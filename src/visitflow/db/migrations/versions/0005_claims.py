"""claims, their lines, files and status history; fee schedules; what the 837P needs of patients and payers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

REFUSAL = 'the claim status history is append-only'

# Who moved a claim and when is evidence for the payer and the auditor; like the audit trail, the database
# refuses to change or remove it.
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER claimevent_no_update BEFORE UPDATE ON claimevent "
    f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}: UPDATE refused'); END",
    f"CREATE TRIGGER claimevent_no_delete BEFORE DELETE ON claimevent "
    f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}: DELETE refused'); END",
]
POSTGRESQL_TRIGGERS = [
    f"CREATE FUNCTION claimevent_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN RAISE EXCEPTION '{REFUSAL}: % refused', TG_OP; END $$",
    "CREATE TRIGGER claimevent_no_change BEFORE UPDATE OR DELETE ON claimevent "
    "FOR EACH ROW EXECUTE FUNCTION claimevent_refuse_change()",
    "CREATE TRIGGER claimevent_no_truncate BEFORE TRUNCATE ON claimevent "
    "FOR EACH STATEMENT EXECUTE FUNCTION claimevent_refuse_change()",
]


def upgrade() -> None:
    op.create_table('claimfile',
    sa.Column('release_batch_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('payer_id', sa.Integer(), nullable=False),
    sa.Column('interchange_control_number', sa.Integer(), nullable=False),
    sa.Column('group_control_number', sa.Integer(), nullable=False),
    sa.Column('transaction_set_control_number', sa.Integer(), nullable=False),
    sa.Column('claim_count', sa.Integer(), nullable=False),
    sa.Column('total_cents', sa.Integer(), nullable=False),
    sa.Column('valid', sa.Boolean(), nullable=False),
    sa.Column('findings', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('submitted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('submitted_by', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('content', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['payer_id'], ['payer.id'], ),
    sa.ForeignKeyConstraint(['release_batch_id'], ['releasebatch.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('release_batch_id', 'payer_id')
    )
    with op.batch_alter_table('claimfile', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_claimfile_payer_id'), ['payer_id'], unique=False)

    op.create_table('payerrate',
    sa.Column('payer_id', sa.Integer(), nullable=False),
    sa.Column('service_code', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
    sa.Column('modifiers', sa.JSON(), nullable=False),
    sa.Column('rate_per_unit_cents', sa.Integer(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('modifier_key', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.ForeignKeyConstraint(['payer_id'], ['payer.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('payer_id', 'service_code', 'modifier_key')
    )
    op.create_table('claim',
    sa.Column('control_number', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('release_batch_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('payer_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('frequency', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
    sa.Column('replaces_claim_id', sa.Integer(), nullable=True),
    sa.Column('payer_claim_number', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('total_cents', sa.Integer(), nullable=False),
    sa.Column('paid_cents', sa.Integer(), nullable=False),
    sa.Column('claim_file_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('state_changed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['claim_file_id'], ['claimfile.id'], ),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], ),
    sa.ForeignKeyConstraint(['payer_id'], ['payer.id'], ),
    sa.ForeignKeyConstraint(['release_batch_id'], ['releasebatch.id'], ),
    sa.ForeignKeyConstraint(['replaces_claim_id'], ['claim.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('control_number'),
    sa.UniqueConstraint('release_batch_id', 'payer_id', 'patient_id', 'period_start', 'frequency')
    )
    with op.batch_alter_table('claim', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_claim_claim_file_id'), ['claim_file_id'], unique=False)
        batch_op.create_index('ix_claim_patient_id_id', ['patient_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_claim_payer_claim_number'), ['payer_claim_number'], unique=False)
        batch_op.create_index('ix_claim_payer_id_id', ['payer_id', 'id'], unique=False)
        batch_op.create_index('ix_claim_period_start_id', ['period_start', 'id'], unique=False)
        batch_op.create_index('ix_claim_state_id', ['state', 'id'], unique=False)

    op.create_table('claimevent',
    sa.Column('claim_id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('from_state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('to_state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['claim_id'], ['claim.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('claimevent', schema=None) as batch_op:
        batch_op.create_index('ix_claimevent_claim_id_id', ['claim_id', 'id'], unique=False)
    for statement in SQLITE_TRIGGERS if op.get_context().dialect.name == 'sqlite' else POSTGRESQL_TRIGGERS:
        op.execute(statement)

    op.create_table('claimline',
    sa.Column('claim_id', sa.Integer(), nullable=False),
    sa.Column('line_number', sa.Integer(), nullable=False),
    sa.Column('visit_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('service_date', sa.Date(), nullable=False),
    sa.Column('hcpcs', sqlmodel.sql.sqltypes.AutoString(length=5), nullable=False),
    sa.Column('modifiers', sa.JSON(), nullable=False),
    sa.Column('units', sa.Integer(), nullable=False),
    sa.Column('charge_cents', sa.Integer(), nullable=False),
    sa.Column('authorization_number', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
    sa.Column('rendering_npi', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('paid_cents', sa.Integer(), nullable=False),
    sa.Column('adjustments', sa.JSON(), nullable=False),
    sa.Column('live', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['claim_id'], ['claim.id'], ),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], ),
    sa.ForeignKeyConstraint(['visit_id'], ['visit.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('claim_id', 'line_number')
    )
    with op.batch_alter_table('claimline', schema=None) as batch_op:
        batch_op.create_index('ix_claimline_patient_date_hcpcs', ['patient_id', 'service_date', 'hcpcs'], unique=False)
        batch_op.create_index('ux_claimline_visit_live', ['visit_id'], unique=True, sqlite_where=sa.text('live'), postgresql_where=sa.text('live'))
        batch_op.create_index('ix_claimline_visit_id', ['visit_id'], unique=False)

    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gender', sqlmodel.sql.sqltypes.AutoString(length=1), server_default='U', nullable=False))
        batch_op.add_column(sa.Column('diagnosis_codes', sa.JSON(), server_default='[]', nullable=False))

    with op.batch_alter_table('payer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('billing_period', sqlmodel.sql.sqltypes.AutoString(length=5), server_default='visit', nullable=False))
        batch_op.add_column(sa.Column('filing_limit_days', sa.Integer(), server_default='365', nullable=False))
        batch_op.add_column(sa.Column('filing_warning_days', sa.Integer(), server_default='30', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('payer', schema=None) as batch_op:
        batch_op.drop_column('filing_warning_days')
        batch_op.drop_column('filing_limit_days')
        batch_op.drop_column('billing_period')

    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_column('diagnosis_codes')
        batch_op.drop_column('gender')

    with op.batch_alter_table('claimline', schema=None) as batch_op:
        batch_op.drop_index('ix_claimline_visit_id')
        batch_op.drop_index('ux_claimline_visit_live', sqlite_where=sa.text('live'), postgresql_where=sa.text('live'))
        batch_op.drop_index('ix_claimline_patient_date_hcpcs')

    op.drop_table('claimline')
    with op.batch_alter_table('claimevent', schema=None) as batch_op:
        batch_op.drop_index('ix_claimevent_claim_id_id')

    op.drop_table('claimevent')
    with op.batch_alter_table('claim', schema=None) as batch_op:
        batch_op.drop_index('ix_claim_state_id')
        batch_op.drop_index('ix_claim_period_start_id')
        batch_op.drop_index('ix_claim_payer_id_id')
        batch_op.drop_index(batch_op.f('ix_claim_payer_claim_number'))
        batch_op.drop_index('ix_claim_patient_id_id')
        batch_op.drop_index(batch_op.f('ix_claim_claim_file_id'))

    op.drop_table('claim')
    op.drop_table('payerrate')
    with op.batch_alter_table('claimfile', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_claimfile_payer_id'))

    op.drop_table('claimfile')
    if op.get_context().dialect.name != 'sqlite':
        op.execute('DROP FUNCTION claimevent_refuse_change()')
