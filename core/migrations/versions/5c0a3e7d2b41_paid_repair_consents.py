"""paid repair consents (有偿服务：业主同意报价)

Revision ID: 5c0a3e7d2b41
Revises: 91a42490f8f0
Create Date: 2026-12-01 20:45:00.000000
"""
import sqlalchemy as sa
from alembic import op

import core.store

revision = '5c0a3e7d2b41'
down_revision = '91a42490f8f0'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('paid_consents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('agreed', sa.Boolean(), nullable=False),
    sa.Column('amount_fen', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=12), nullable=False),
    sa.Column('consented_by', sa.String(length=64), nullable=False),
    sa.Column('at', core.store.UtcDateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.String(length=64), nullable=False),
    sa.Column('signature_png', sa.LargeBinary(), nullable=True),
    sa.Column('call_record_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['call_record_id'], ['call_records.id'], ),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('paid_consents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_paid_consents_ticket_id'), ['ticket_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('paid_consents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_paid_consents_ticket_id'))
    op.drop_table('paid_consents')
