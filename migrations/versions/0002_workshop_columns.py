"""workshop: per-step image and doc columns, workshop executor and base

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 14:10:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

STEP_COLUMNS = [
    sa.Column('image_id', sa.Text(), nullable=True, comment="container step: the engine's image ID (or OCI archive digest)"),
    sa.Column('image_pushed', sa.Text(), nullable=True, comment='container step: the digest last pushed to the registry'),
    sa.Column('position', sa.Integer(), nullable=True, comment='container step: 1-based place in the chain'),
    sa.Column('title', sa.Text(), nullable=True, comment='container step: title of its doc'),
    sa.Column('doc', sa.Text(), nullable=True, comment='container step: its doc, relative to content/'),
    sa.Column('text', sa.Text(), nullable=True, comment="container step: its doc's Markdown"),
]
WORKSHOP_COLUMNS = [
    sa.Column('executor', sa.Text(), nullable=True, comment='podman | dagger: where the images were built'),
    sa.Column('base_id', sa.Text(), nullable=True, comment='identity of the base image the chain was built FROM'),
    sa.Column('steps', sa.Integer(), nullable=True, comment='number of steps in the chain'),
]


def upgrade() -> None:
    # plain ADD COLUMN (nullable): SQLite does it in place, no table copy
    for col in STEP_COLUMNS:
        op.add_column('steps', col)
    for col in WORKSHOP_COLUMNS:
        op.add_column('workshop', col)
    # (the new comments on image_tag/image_digest live in tables.py; SQLite stores no comments)


def downgrade() -> None:
    with op.batch_alter_table('workshop', schema=None) as batch_op:
        for col in WORKSHOP_COLUMNS:
            batch_op.drop_column(col.name)
    with op.batch_alter_table('steps', schema=None) as batch_op:
        for col in STEP_COLUMNS:
            batch_op.drop_column(col.name)
