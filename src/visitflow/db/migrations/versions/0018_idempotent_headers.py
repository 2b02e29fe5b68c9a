"""A stored answer keeps the headers that steer the client (Location, htmx's HX-*): a resent form whose first
answer was a redirect is redirected again, instead of getting an empty 303.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 05:40:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('idempotentrequest') as batch:
        batch.add_column(sa.Column('headers', sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('idempotentrequest') as batch:
        batch.drop_column('headers')
