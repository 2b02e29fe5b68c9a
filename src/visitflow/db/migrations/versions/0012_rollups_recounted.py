"""The rollups gain figures (note lag by week of service; the dollars held by rule and by age, ready to bill by
payer): a database that already has rollups gets them recounted from its visits, so the new figures are right
from the first start after the upgrade and every projection after it changes them from a true count. (A
database with visits but no rollups yet gets them from `migrate`, after the last migration.)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 02:00:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    from visitflow.services.rollups import recount

    db = op.get_bind()
    if db.execute(sa.text("SELECT 1 FROM visitrollup LIMIT 1")).first() is not None:
        recount(db)


NEW_FIGURES = ("note_lag_week", "held_value", "held_day_visits", "held_day_value", "held_at_visits", "held_at_value")


def downgrade() -> None:
    # The older code neither reads nor keeps these figures: their rows would only go stale.
    op.get_bind().execute(sa.text("DELETE FROM visitrollup WHERE figure IN :figures")
                          .bindparams(sa.bindparam("figures", expanding=True)), {"figures": list(NEW_FIGURES)})
