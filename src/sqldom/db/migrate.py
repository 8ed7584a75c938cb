"""Create and upgrade var/build.db with the Alembic migrations shipped in the package.

The check at start is cheap (one query through sqlite3). A new database is
created here, from the schema that ``upgrade head`` makes, kept in
``snapshot.py`` (``create_fresh``): a first build does not wait for Alembic.
Alembic is imported only to upgrade an older database, and then in a child
interpreter (``upgrade_apart``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqldom.errors import DatabaseError

# Every revision this sqldom knows, oldest first; a test checks it against migrations/.
REVISIONS = ("0001", "0002", "0003", "0004")
HEAD = REVISIONS[-1]
SQLITE_HEADER = b"SQLite format 3\x00"
# A new database's pages: a cold build writes ~16,000 blobs of a few KiB and ~150,000 rows;
# with 16 KiB pages its record's commit took 0.4 s instead of 0.7 s (10,000 documents).
PAGE_SIZE = 16384
HINT = "upgrade sqldom, or run 'sqldom clean' to start over (the database is only a cache of content/)"


def script_location() -> str:
    import sqldom.migrations as m
    return os.path.dirname(os.path.abspath(m.__file__ or ""))


CORRUPT_WORDS = ("malformed", "not a database", "file is encrypted")
ACCESS_WORDS = ("readonly", "read-only", "unable to open", "permission", "access denied", "authorization")
FOREIGN_HINT = "sqldom left it untouched; move it away (sqldom will then create its own database there)"
SQLDOM_TABLES = {"blobs", "sources", "build", "steps", "deps", "facts", "runs", "problems"}


def is_corruption(err: BaseException) -> bool:
    """A SQLite error saying the file is damaged (not merely unreadable or locked)."""
    text = str(err).lower()
    return any(w in text for w in CORRUPT_WORDS)


def is_access_failure(err: BaseException) -> bool:
    """A SQLite error saying the file cannot be opened or written (permissions, read-only)."""
    text = str(err).lower()
    return any(w in text for w in ACCESS_WORDS)


def access_problem(db: Path, shown: str) -> str:
    """Why ``db`` cannot be opened for writing, in the user's words: which of var/ or the file is to blame."""
    folder = shown.rsplit("/", 1)[0] + "/" if "/" in shown else "its folder"
    try:
        if os.statvfs(db.parent).f_flag & os.ST_RDONLY:
            return f"the file system holding {folder} is mounted read-only"
    except OSError:
        pass
    if db.exists() and not os.access(db, os.R_OK):
        return f"permission denied: {shown} is not readable by you"
    if db.exists() and not os.access(db, os.W_OK):
        return f"permission denied: {shown} is read-only"
    if not os.access(db.parent, os.W_OK):
        return f"permission denied: {folder} is read-only (not writable by you)"
    return "permission denied or read-only"


def access_error(db: Path, shown: str, err: BaseException | None = None) -> DatabaseError:
    detail = f" ({err})" if err is not None else ""
    return DatabaseError(f"cannot open the database: {access_problem(db, shown)}{detail}", path=shown,
                         hint="make var/ and var/build.db writable by you (or run sqldom as the user who "
                              "built the project); sqldom left the database untouched")


def current_revision(db: Path, shown: str) -> str | None:
    """The schema revision of an existing database; None when it is empty. Refuses foreign files."""
    try:
        if not db.exists() or db.stat().st_size == 0:
            return None
        with open(db, "rb") as f:
            header = f.read(16)
    except OSError as e:
        raise access_error(db, shown, None) from e
    if header != SQLITE_HEADER:
        raise DatabaseError("not a SQLite database (corrupt, or another program's file)", path=shown,
                            hint=FOREIGN_HINT)
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
            if "alembic_version" not in tables:
                if tables:
                    raise DatabaseError("not a sqldom database (it has tables sqldom did not create)",
                                        path=shown, hint=FOREIGN_HINT)
                return None
            row = con.execute("select version_num from alembic_version").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        if is_corruption(e):
            raise DatabaseError(f"the database is corrupt ({e})", path=shown,
                                hint="move it away or run 'sqldom clean'; content/ is the source of truth "
                                     "and a full build recreates it") from e
        if is_access_failure(e):
            raise access_error(db, shown, e) from e
        if "locked" in str(e).lower() or "busy" in str(e).lower():
            raise DatabaseError(f"cannot read the database: {e}", path=shown,
                                hint="another program holds it; close that program and try again") from e
        raise DatabaseError(f"cannot read the database: {e}", path=shown,
                            hint="if it stays unreadable, move it away or run 'sqldom clean'; a full build "
                                 "recreates it from content/") from e
    return row[0] if row else None


def _schema_text_says_sqldom(db: Path) -> bool:
    """Whether sqldom's CREATE TABLE statements are in the file's bytes (the schema of a damaged file)."""
    markers = {b"CREATE TABLE alembic_version ", *(f"CREATE TABLE {t} ".encode() for t in
                                                  ("blobs", "sources", "steps", "deps", "build"))}
    overlap = max(len(m) for m in markers)
    tail = b""
    try:
        with open(db, "rb") as f:
            while markers and (chunk := f.read(1 << 20)):
                window = tail + chunk
                markers = {m for m in markers if m not in window}
                tail = window[-overlap:]
    except OSError:
        return False
    return not markers


def is_sqldom_database(db: Path) -> bool:
    """Whether ``db`` is a database sqldom made, even a corrupt or a newer one (what ``clean`` may remove).

    Only sqldom's own tables count: another program's SQLite file, even one
    managed by Alembic, is not sqldom's. When SQLite cannot read the schema (a
    corrupt file), the schema text in the file's bytes decides.
    """
    try:
        with open(db, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError:
        return False
    if head != SQLITE_HEADER:
        return False
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return _schema_text_says_sqldom(db)
    return "alembic_version" in tables and SQLDOM_TABLES <= tables


def ensure_schema(db: Path, shown: str = "var/build.db") -> None:
    """At head: go. Older: upgrade. Newer or foreign: refuse with the remedy."""
    rev = current_revision(db, shown)
    if rev == HEAD:
        return
    if rev is not None and rev not in REVISIONS:
        raise DatabaseError(f"the database has schema revision {rev}, newer than this sqldom knows "
                            f"(head {HEAD})", path=shown, hint=HINT)
    if rev is None:
        create_fresh(db, shown)
    else:
        upgrade_apart(db)


def schema_statements(con: sqlite3.Connection) -> list[str]:
    """The CREATE statements of a database, in the order they ran (SQLite's own indexes have none)."""
    return [str(r[0]) for r in con.execute(
        "select sql from sqlite_master where sql is not null and name not like 'sqlite_%' order by rowid")]


def create_fresh(db: Path, shown: str = "var/build.db") -> None:
    """Create the head schema in an empty database without Alembic: the statements ``upgrade head`` runs.

    ``snapshot.py`` holds them (a test checks them against a real upgrade).
    Starting Alembic in a child costs a first build 0.6 s; these statements,
    a few milliseconds. One transaction, as an upgrade is: a build killed
    here leaves an empty database, which the next one creates again.
    """
    from sqldom.db.snapshot import REVISION, STATEMENTS
    if REVISION != HEAD:   # (a new migration without a new snapshot: the test says how to make one)
        upgrade_apart(db)
        return
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(db, isolation_level=None)
        try:
            con.execute(f"PRAGMA page_size={PAGE_SIZE}")   # (both are properties of the file, set outside
            con.execute("PRAGMA journal_mode=WAL")        # any transaction; the page size only while it is empty)
            con.execute("BEGIN IMMEDIATE")
            try:
                if not con.execute("select count(*) from sqlite_master").fetchone()[0]:
                    for statement in STATEMENTS:
                        con.execute(statement)
                    con.execute("insert into alembic_version (version_num) values (?)", (REVISION,))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.close()
    except (OSError, sqlite3.OperationalError) as e:
        if isinstance(e, OSError) or is_access_failure(e):
            raise access_error(db, shown, e) from e
        raise DatabaseError(f"cannot create the database: {e}", path=shown, hint=HINT) from e


def write_snapshot(target: Path) -> None:
    """Rewrite ``snapshot.py`` from a real ``upgrade head`` (after adding a migration)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "head.db"
        upgrade(db)
        con = sqlite3.connect(db)
        try:
            statements = schema_statements(con)
        finally:
            con.close()
    lines = ['"""The schema ``upgrade head`` creates, statement by statement: how a new database is made',
             '(``migrate.create_fresh``). Generated by ``python -m sqldom.db.migrate --snapshot``; do not edit."""',
             "", f"REVISION = {HEAD!r}", "", "STATEMENTS = ("]
    lines += [f"    {s!r}," for s in statements]
    lines += [")", ""]
    target.write_text("\n".join(lines), encoding="utf-8")


def sqlalchemy_loaded() -> bool:
    import sys
    return "sqlalchemy" in sys.modules


def upgrade_apart(db: Path) -> None:
    """Upgrade in a child interpreter, so that this process never imports Alembic and SQLAlchemy.

    They are 0.5 s of imports and ~25 MiB that a build would otherwise carry
    to its end, and that its forked workers would inherit. The upgrade is one
    transaction wherever it runs; if the child fails for any reason (or cannot
    start), the upgrade runs here, which explains the failure as usual.
    """
    import subprocess
    import sys
    if sqlalchemy_loaded():   # already paid for in this process: nothing to save
        upgrade(db)
        return
    try:
        done = subprocess.run([sys.executable, "-m", "sqldom.db.migrate", str(db)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        done = False
    if not done:
        upgrade(db)


def _autocommit_driver(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None


def upgrade(db: Path, revision: str = "head") -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, event

    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = sqlite3.connect(db)   # WAL is a property of the file; set it outside any transaction
        try:
            con.execute(f"PRAGMA page_size={PAGE_SIZE}")
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.OperationalError as e:
        if is_access_failure(e):
            raise access_error(db, "var/build.db", e) from e
        raise
    cfg = Config()
    cfg.set_main_option("script_location", script_location())
    engine = create_engine(f"sqlite:///{db}")
    # Python's sqlite3 commits before DDL on its own, so CREATE TABLE would escape the
    # transaction: a build killed mid-migration left half a schema. Take control of
    # BEGIN so the whole upgrade (tables and alembic_version) is one transaction.
    event.listen(engine, "connect", _autocommit_driver)
    event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


if __name__ == "__main__":   # the child of ``upgrade_apart``, or the snapshot's maker
    import sys
    if sys.argv[1] == "--snapshot":
        write_snapshot(Path(__file__).with_name("snapshot.py"))
    else:
        upgrade(Path(sys.argv[1]))
