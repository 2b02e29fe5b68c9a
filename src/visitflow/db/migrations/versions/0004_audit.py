"""append-only audit trail

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

REFUSAL = 'the audit trail is append-only'

# The application never changes or removes an audit event; the database refuses it too, so neither a bug nor
# someone with the application's database login can quietly rewrite who saw what.
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER auditevent_no_update BEFORE UPDATE ON auditevent "
    f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}: UPDATE refused'); END",
    f"CREATE TRIGGER auditevent_no_delete BEFORE DELETE ON auditevent "
    f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}: DELETE refused'); END",
]
POSTGRESQL_TRIGGERS = [
    f"CREATE FUNCTION auditevent_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN RAISE EXCEPTION '{REFUSAL}: % refused', TG_OP; END $$",
    "CREATE TRIGGER auditevent_no_change BEFORE UPDATE OR DELETE ON auditevent "
    "FOR EACH ROW EXECUTE FUNCTION auditevent_refuse_change()",
    # TRUNCATE skips row triggers; it needs a statement trigger of its own.
    "CREATE TRIGGER auditevent_no_truncate BEFORE TRUNCATE ON auditevent "
    "FOR EACH STATEMENT EXECUTE FUNCTION auditevent_refuse_change()",
]


def upgrade() -> None:
    op.create_table('auditevent',
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('visit_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('patient_id', sa.Integer(), nullable=True),
    sa.Column('client_ip', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('auditevent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auditevent_at'), ['at'], unique=False)
        batch_op.create_index('ix_auditevent_username_id', ['username', 'id'], unique=False)
        batch_op.create_index('ix_auditevent_patient_id_id', ['patient_id', 'id'], unique=False)
        batch_op.create_index('ix_auditevent_visit_id_id', ['visit_id', 'id'], unique=False)
        batch_op.create_index('ix_auditevent_action_id', ['action', 'id'], unique=False)

    for statement in SQLITE_TRIGGERS if op.get_context().dialect.name == 'sqlite' else POSTGRESQL_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    # Dropping the table drops its triggers; PostgreSQL's trigger function goes separately.
    with op.batch_alter_table('auditevent', schema=None) as batch_op:
        batch_op.drop_index('ix_auditevent_action_id')
        batch_op.drop_index('ix_auditevent_visit_id_id')
        batch_op.drop_index('ix_auditevent_patient_id_id')
        batch_op.drop_index('ix_auditevent_username_id')
        batch_op.drop_index(batch_op.f('ix_auditevent_at'))

    op.drop_table('auditevent')
    if op.get_context().dialect.name != 'sqlite':
        op.execute('DROP FUNCTION auditevent_refuse_change()')
