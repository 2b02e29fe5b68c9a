"""Event endpoints chosen by event type and added once per request; deliveries of visit outcomes and test events

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 01:50:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('event_endpoint', schema=None) as batch_op:
        # Endpoints registered before visit outcomes were sent keep getting only what they asked for.
        batch_op.add_column(sa.Column('event_types', sa.JSON(), nullable=False,
                                      server_default=sa.text("'[\"change.recorded\"]'")))
        batch_op.add_column(sa.Column('request_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_event_endpoint_request_key'), ['request_key'], unique=True)

    with op.batch_alter_table('event_delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False,
                                      server_default='change.recorded'))
        batch_op.add_column(sa.Column('visit_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.alter_column('change_id', existing_type=sa.Integer(), nullable=True)
        batch_op.create_index('ix_event_delivery_endpoint_id_updated_at', ['endpoint_id', 'updated_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('event_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_event_delivery_endpoint_id_updated_at')
        batch_op.alter_column('change_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('visit_id')
        batch_op.drop_column('event_type')

    with op.batch_alter_table('event_endpoint', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_endpoint_request_key'))
        batch_op.drop_column('request_key')
        batch_op.drop_column('event_types')
