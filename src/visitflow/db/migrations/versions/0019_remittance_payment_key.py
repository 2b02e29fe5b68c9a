"""A payment is imported once: remittances gain a unique payment key (payer and TRN trace number); lines paid
less for a fixable reason are counted apart from denied ones; the money applied to our claims is kept by day
(`paymentday`), so "paid in the last 30 days" no longer counts the payers' whole deposits.

Existing remittances get their key in import order: a copy of a payment imported again before this migration
(same payer and trace number, new control numbers) keeps no key, so it is neither a second payment in the money
figures nor in the way of the unique key. Its lines stay listed.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 06:00:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    from visitflow.services.remittances import payment_key
    from visitflow.services.revenue import recount_payments

    # Plain ALTER TABLE ADD COLUMN and a unique index: nothing that makes SQLite copy the table (which its
    # remittance lines' foreign keys would refuse).
    op.add_column('remittance', sa.Column('payment_key', sqlmodel.sql.sqltypes.AutoString(length=140), nullable=True))
    op.add_column('remittance', sa.Column('lines_adjusted', sa.Integer(), server_default='0', nullable=False))
    op.create_table(
        'paymentday',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('applied_cents', sa.Integer(), nullable=False),
        sa.Column('unmatched_cents', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('day'),
    )

    db = op.get_bind()
    remittance = sa.table('remittance', sa.column('id'), sa.column('payer_code'), sa.column('payer_name'),
                          sa.column('trace_number'), sa.column('digest'), sa.column('payment_key'))
    seen: set[str] = set()
    for row in db.execute(sa.select(remittance.c.id, remittance.c.payer_code, remittance.c.payer_name,
                                    remittance.c.trace_number, remittance.c.digest).order_by(remittance.c.id)).all():
        key = payment_key(row.payer_code, row.payer_name, row.trace_number, row.digest)
        if key not in seen:
            seen.add(key)
            db.execute(sa.update(remittance).where(remittance.c.id == row.id).values(payment_key=key))
    # Adjusted lines were counted with the denied ones.
    db.execute(sa.text(
        "UPDATE remittance SET "
        "lines_adjusted = (SELECT count(*) FROM remittanceline l WHERE l.remittance_id = remittance.id "
        "AND l.outcome = 'adjusted'), "
        "lines_denied = (SELECT count(*) FROM remittanceline l WHERE l.remittance_id = remittance.id "
        "AND l.outcome = 'denied')"))
    op.create_index('ix_remittance_payment_key', 'remittance', ['payment_key'], unique=True)
    recount_payments(db)


def downgrade() -> None:
    op.drop_table('paymentday')
    op.drop_index('ix_remittance_payment_key', table_name='remittance')
    op.execute("UPDATE remittance SET lines_denied = lines_denied + lines_adjusted")
    op.drop_column('remittance', 'lines_adjusted')
    op.drop_column('remittance', 'payment_key')
