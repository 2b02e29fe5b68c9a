"""The rollups gain figures (note lag by week of service; the dollars held by rule and by age; ready to bill by
payer, service and modifiers, the fee schedule's key): a database that already has rollups gets them recounted
from its visits, so the new figures are right from the first start after the upgrade and every projection after
it changes them from a true count. (A
database with visits but no rollups yet gets them from `migrate`, after the last migration.)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 02:00:00
"""
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    from visitflow.services.rollups import recount_if_counted

    recount_if_counted(op.get_bind())


def downgrade() -> None:
    # The older code counts other figures (and "ready" by payer only): no rollups at all, and its `migrate`
    # counts them afresh from the visits.
    op.execute("DELETE FROM visitrollup")
