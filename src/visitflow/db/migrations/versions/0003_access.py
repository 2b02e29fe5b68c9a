"""server-side sessions, sign-in lockout, API tokens

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# Lightweight views of the tables for the data steps (the ORM classes follow the newest schema, not this one).
_user = sa.table('user', sa.column('id', sa.Integer()), sa.column('username', sa.String()),
                 sa.column('api_token_hash', sa.String()))
_token = sa.table('apitoken', sa.column('user_id', sa.Integer()), sa.column('name', sa.String()),
                  sa.column('token_hash', sa.String()), sa.column('prefix', sa.String()),
                  sa.column('created_at', sqlmodel.sql.sqltypes.UTCDateTime()),
                  sa.column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime()), sa.column('id', sa.Integer()))
MOVED_TOKEN_NAME = 'API token (issued before tokens had names)'


def upgrade() -> None:
    op.create_table('usersession',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('last_seen_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('ended_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('client_address', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('user_agent', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('usersession', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_usersession_token_hash'), ['token_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_usersession_user_id'), ['user_id'], unique=False)

    op.create_table('apitoken',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('prefix', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('last_used_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('apitoken', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_apitoken_token_hash'), ['token_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_apitoken_user_id'), ['user_id'], unique=False)

    conn = op.get_bind()
    # Each user's single token moves into its own row, keeping its digest: the token itself keeps working.
    # Its first characters were never stored, so it has no prefix to show. The digests are read now and
    # written after the user table is rebuilt: SQLite rebuilds it by dropping it, which rows pointing at
    # it would forbid.
    moved_at = datetime.now(UTC)
    old_tokens = conn.execute(sa.select(_user.c.id, _user.c.api_token_hash)
                              .where(_user.c.api_token_hash.is_not(None))).all()

    # Usernames become lower-case (sign-in compares them case-insensitively). Two accounts that differ only
    # in case cannot both keep their name: stop and say which, rather than pick one.
    lowered = sa.func.lower(sa.func.trim(_user.c.username))
    clashes = conn.execute(sa.select(lowered).group_by(lowered).having(sa.func.count() > 1)).scalars().all()
    if clashes:
        raise RuntimeError('these usernames differ only in upper/lower case; rename one of each before '
                           f'upgrading: {", ".join(sorted(clashes))}')
    conn.execute(_user.update().values(username=lowered))

    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_signins', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('locked_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('last_signed_in_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.drop_index(batch_op.f('ix_user_api_token_hash'))
        batch_op.drop_column('api_token_hash')

    if old_tokens:
        conn.execute(_token.insert(), [{'user_id': user_id, 'name': MOVED_TOKEN_NAME, 'token_hash': digest,
                                        'prefix': None, 'created_at': moved_at} for user_id, digest in old_tokens])


def downgrade() -> None:
    # The old schema holds one token per user: keep each user's oldest token that is not revoked. Read
    # before the token table goes, written after the user table is rebuilt (see upgrade).
    conn = op.get_bind()
    oldest = (sa.select(_token.c.user_id, sa.func.min(_token.c.id).label('id'))
              .where(_token.c.revoked_at.is_(None)).group_by(_token.c.user_id).subquery())
    kept = conn.execute(sa.select(_token.c.user_id, _token.c.token_hash)
                        .join(oldest, oldest.c.id == _token.c.id)).all()

    with op.batch_alter_table('apitoken', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_apitoken_user_id'))
        batch_op.drop_index(batch_op.f('ix_apitoken_token_hash'))
    op.drop_table('apitoken')
    with op.batch_alter_table('usersession', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_usersession_user_id'))
        batch_op.drop_index(batch_op.f('ix_usersession_token_hash'))
    op.drop_table('usersession')

    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('api_token_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index(batch_op.f('ix_user_api_token_hash'), ['api_token_hash'], unique=True)
        batch_op.drop_column('last_signed_in_at')
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_signins')
    for user_id, digest in kept:
        conn.execute(_user.update().where(_user.c.id == user_id).values(api_token_hash=digest))
