"""The rollups gain the dashboard's totals without a clinician (open tasks by kind, exceptions by whether they can
be approved), so the dashboard reads a row per kind instead of one per clinician and kind: a database that already
has rollups gets them recounted from its visits, right from the first start after the upgrade.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 05:40:00
"""
from alembic import op


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    from visitflow.services.rollups import recount_if_counted

    recount_if_counted(op.get_bind())


def downgrade() -> None:
    # The older code counts per-clinician task and exception figures instead: no rollups at all, and its
    # `migrate` counts them afresh from the visits.
    op.execute("DELETE FROM visitrollup")
