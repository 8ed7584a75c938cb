"""deps and facts WITHOUT ROWID: each row stored once, in its primary key's order

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 03:00:00

A rowid table with a composite primary key keeps every row twice: in the table
and in the key's index. deps is the largest table after blobs (a dozen rows per
document), and a cold build of 100,000 documents spent most of its record
inserting them. Clustered by the key, a row is written once and the table is a
third smaller; nothing reads these tables by rowid.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _deps(name: str, with_rowid: bool) -> None:
    op.create_table(name,
    sa.Column('step', sa.Text(), nullable=False),
    sa.Column('phase', sa.Text(), nullable=False, comment='parse | write'),
    sa.Column('kind', sa.Text(), nullable=False, comment='source | exists | fact | glob | code | spec | parent'),
    sa.Column('target', sa.Text(), nullable=False, comment='path, pattern or function name'),
    sa.Column('key', sa.Text(), nullable=False, comment="fact name; '' when none"),
    sa.Column('hash', sa.Text(), nullable=False, comment="hash of the value read; 'absent' for a missing thing"),
    sa.ForeignKeyConstraint(['step'], ['steps.id'], name='fk_deps_step_steps', ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('step', 'phase', 'kind', 'target', 'key', name='pk_deps'),
    comment='One row per thing a step read in its last execution.',
    sqlite_with_rowid=with_rowid,
    )


def _facts(name: str, with_rowid: bool) -> None:
    op.create_table(name,
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False, comment='JSON'),
    sa.Column('hash', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['path'], ['steps.id'], name='fk_facts_path_steps', ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('path', 'name', name='pk_facts'),
    comment='One row per fact (title, links, front matter key) of a document.',
    sqlite_with_rowid=with_rowid,
    )


def _rebuild(with_rowid: bool) -> None:
    """Copy both tables into new ones of the other kind (no other table refers to them)."""
    _deps('_deps_new', with_rowid)
    op.execute('insert into _deps_new (step, phase, kind, target, "key", hash) '
               'select step, phase, kind, target, "key", hash from deps')
    op.drop_index('ix_deps_target', table_name='deps')
    op.drop_table('deps')
    op.rename_table('_deps_new', 'deps')
    op.create_index('ix_deps_target', 'deps', ['target', 'kind', 'hash', 'step'], unique=False)
    _facts('_facts_new', with_rowid)
    op.execute('insert into _facts_new (path, name, value, hash) select path, name, value, hash from facts')
    op.drop_table('facts')
    op.rename_table('_facts_new', 'facts')


def upgrade() -> None:
    _rebuild(with_rowid=False)


def downgrade() -> None:
    _rebuild(with_rowid=True)
