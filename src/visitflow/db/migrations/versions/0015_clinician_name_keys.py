"""Clinicians found by the start of a name (the clinician filter on /escalations): an index on each name
lower-cased and compared byte by byte (`name_key`: `lower(x)` on SQLite, `lower(x) COLLATE "C"` on PostgreSQL),
so a prefix is one index range instead of a read of every clinician.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 03:00:00
"""
import sqlalchemy as sa
from alembic import op

from visitflow.db.tables import name_key

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

NAMES = {'ix_clinician_first_name_key': 'first_name', 'ix_clinician_last_name_key': 'last_name'}


def upgrade() -> None:
    for index, column in NAMES.items():
        op.create_index(index, 'clinician', [name_key(sa.column(column))], unique=False)


def downgrade() -> None:
    for index in NAMES:
        op.drop_index(index, table_name='clinician')
