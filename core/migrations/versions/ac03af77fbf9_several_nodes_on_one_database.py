"""several nodes on one database: node runs and call records' node, the scheduler lease, live changes

Revision ID: ac03af77fbf9
Revises: 9cfee703a9d8
Create Date: 2026-12-01 16:59:47.100455
"""
import sqlalchemy as sa
from alembic import op

import core.store

revision = 'ac03af77fbf9'
down_revision = '9cfee703a9d8'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('leases',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('acquired_at', core.store.UtcDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', core.store.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('live_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('call_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_table('node_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('host', sa.String(length=64), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', core.store.UtcDateTime(timezone=True), nullable=False),
    sa.Column('seen_at', core.store.UtcDateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', core.store.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('node_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_node_runs_node'), ['node'], unique=False)
        batch_op.create_index(batch_op.f('ix_node_runs_seen_at'), ['seen_at'], unique=False)

    with op.batch_alter_table('call_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('node', sa.String(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('node_run_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_call_records_node'), ['node'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_records_node_run_id'), ['node_run_id'], unique=False)
        batch_op.create_foreign_key('fk_call_records_node_run_id', 'node_runs', ['node_run_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('call_records', schema=None) as batch_op:
        batch_op.drop_constraint('fk_call_records_node_run_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_call_records_node_run_id'))
        batch_op.drop_index(batch_op.f('ix_call_records_node'))
        batch_op.drop_column('node_run_id')
        batch_op.drop_column('node')

    with op.batch_alter_table('node_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_node_runs_seen_at'))
        batch_op.drop_index(batch_op.f('ix_node_runs_node'))

    op.drop_table('node_runs')
    op.drop_table('live_changes')
    op.drop_table('leases')
