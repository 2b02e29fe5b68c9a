"""retried requests answer once; release batches written first

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401
from alembic import op  # noqa: F401

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'idempotentrequest',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('request_digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('locked_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('status', sa.Integer(), nullable=True),
        sa.Column('content_type', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column('body', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('user_id', 'method', 'path', 'key'),
    )
    op.create_index(op.f('ix_idempotentrequest_user_id'), 'idempotentrequest', ['user_id'], unique=False)
    op.create_index(op.f('ix_idempotentrequest_created_at'), 'idempotentrequest', ['created_at'], unique=False)
    with op.batch_alter_table('releasebatch') as batch:
        batch.add_column(sa.Column('completed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('releasebatch') as batch:
        batch.drop_column('completed_at')
    op.drop_index(op.f('ix_idempotentrequest_created_at'), table_name='idempotentrequest')
    op.drop_index(op.f('ix_idempotentrequest_user_id'), table_name='idempotentrequest')
    op.drop_table('idempotentrequest')
