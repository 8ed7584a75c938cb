"""probe: the no-op probe's row, and a covering index on deps(target, kind, hash, step)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 17:00:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('probe',
    sa.Column('id', sa.Integer(), nullable=False, comment='always 1: at most one row'),
    sa.Column('builtin', sa.Text(), nullable=False, comment="identity of sqldom's built-in code that recorded it"),
    sa.Column('config_files', sa.Text(), nullable=False,
              comment='JSON list of the project files (sqldom.yaml, build.py) whose stat the probe compares'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_probe')),
    comment="Present when the last build's configuration lets the no-op probe (sqldom/probe.py) answer a "
            "build with nothing to do: no workshop, no container images, no pages."
    )
    # a covering index: "who read X" and "did a step read code X with another hash" stay in the index
    # (plain DROP/CREATE INDEX: no table copy)
    op.drop_index('ix_deps_target', table_name='deps')
    op.create_index('ix_deps_target', 'deps', ['target', 'kind', 'hash', 'step'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_deps_target', table_name='deps')
    op.create_index('ix_deps_target', 'deps', ['target', 'kind'], unique=False)
    op.drop_table('probe')
