"""Create and upgrade var/build.db with the Alembic migrations shipped in the package.

The check at start is cheap (one query through sqlite3); Alembic is imported
only when there is something to create or upgrade.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqldom.errors import DatabaseError

# Every revision this sqldom knows, oldest first; a test checks it against migrations/.
REVISIONS = ("0001",)
HEAD = REVISIONS[-1]
SQLITE_HEADER = b"SQLite format 3\x00"
HINT = "upgrade sqldom, or run 'sqldom clean' to start over (the database is only a cache of content/)"


def script_location() -> str:
    import sqldom.migrations as m
    return os.path.dirname(os.path.abspath(m.__file__ or ""))


def current_revision(db: Path, shown: str) -> str | None:
    """The schema revision of an existing database; None when it is empty. Refuses foreign files."""
    if not db.exists() or db.stat().st_size == 0:
        return None
    with open(db, "rb") as f:
        header = f.read(16)
    if header != SQLITE_HEADER:
        raise DatabaseError("not a SQLite database (corrupt, or another program's file)", path=shown,
                            hint="sqldom left it untouched; move it away or run 'sqldom clean'")
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
            if "alembic_version" not in tables:
                if tables:
                    raise DatabaseError("not a sqldom database (it has tables sqldom did not create)",
                                        path=shown,
                                        hint="sqldom left it untouched; move it away or run 'sqldom clean'")
                return None
            row = con.execute("select version_num from alembic_version").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise DatabaseError(f"cannot read the database: {e}", path=shown,
                            hint="it may be corrupt; 'sqldom clean' starts over from content/") from e
    return row[0] if row else None


def ensure_schema(db: Path, shown: str = "var/build.db") -> None:
    """At head: go. Older: upgrade. Newer or foreign: refuse with the remedy."""
    rev = current_revision(db, shown)
    if rev == HEAD:
        return
    if rev is not None and rev not in REVISIONS:
        raise DatabaseError(f"the database has schema revision {rev}, newer than this sqldom knows "
                            f"(head {HEAD})", path=shown, hint=HINT)
    upgrade(db)


def upgrade(db: Path, revision: str = "head") -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)   # WAL is a property of the file; set it outside any transaction
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    cfg = Config()
    cfg.set_main_option("script_location", script_location())
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()
