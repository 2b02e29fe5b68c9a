"""Visits found by their id in any case (a source system's v-8001 is the stored V-8001): an index on the id
lower-cased and compared byte by byte (`name_key`), so the lookup is one index read, not a read of every visit.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 05:30:00
"""
import sqlalchemy as sa
from alembic import op

from visitflow.db.tables import name_key

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_visit_id_key', 'visit', [name_key(sa.column('id'))], unique=False)


def downgrade() -> None:
    op.drop_index('ix_visit_id_key', table_name='visit')
