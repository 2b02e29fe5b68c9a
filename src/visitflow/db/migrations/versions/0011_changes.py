"""What changed (CHG-01): change records and what each did to the open visits; event endpoints and deliveries;
the source system's id on authorizations (bulk intake)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 23:17:18.396258
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('change_record',
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=True),
    sa.Column('payer_id', sa.Integer(), nullable=True),
    sa.Column('summary', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('visits_touched', sa.Integer(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('change_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_change_record_at'), ['at'], unique=False)
        batch_op.create_index('ix_change_record_patient_id_id', ['patient_id', 'id'], unique=False)
        batch_op.create_index('ix_change_record_payer_id_id', ['payer_id', 'id'], unique=False)

    op.create_table('event_endpoint',
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('secret', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('change_visit',
    sa.Column('change_id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('state_before', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('state_after', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('units_before', sa.Integer(), nullable=True),
    sa.Column('units_after', sa.Integer(), nullable=True),
    sa.Column('cents_before', sa.Integer(), nullable=True),
    sa.Column('cents_after', sa.Integer(), nullable=True),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('checked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['change_id'], ['change_record.id'], ),
    sa.PrimaryKeyConstraint('change_id', 'visit_id')
    )
    with op.batch_alter_table('change_visit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_change_visit_visit_id'), ['visit_id'], unique=False)

    op.create_table('event_delivery',
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('change_id', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('delivered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['endpoint_id'], ['event_endpoint.id'], ),
    sa.PrimaryKeyConstraint('endpoint_id', 'event_id')
    )
    with op.batch_alter_table('event_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_delivery_change_id'), ['change_id'], unique=False)

    with op.batch_alter_table('authorization', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_id', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True))
        batch_op.create_index(batch_op.f('ix_authorization_source_id'), ['source_id'], unique=True)



def downgrade() -> None:
    with op.batch_alter_table('authorization', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_authorization_source_id'))
        batch_op.drop_column('source_id')

    with op.batch_alter_table('event_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_delivery_change_id'))

    op.drop_table('event_delivery')
    with op.batch_alter_table('change_visit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_change_visit_visit_id'))

    op.drop_table('change_visit')
    op.drop_table('event_endpoint')
    with op.batch_alter_table('change_record', schema=None) as batch_op:
        batch_op.drop_index('ix_change_record_payer_id_id')
        batch_op.drop_index('ix_change_record_patient_id_id')
        batch_op.drop_index(batch_op.f('ix_change_record_at'))

    op.drop_table('change_record')
