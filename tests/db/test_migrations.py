"""The database is only ever created by the migrations shipped in the package."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sqldom.db import migrate
from tests.support.project import Project

SPEC_TABLES = {"blobs", "sources", "build", "steps", "deps", "facts", "runs", "executions", "problems",
               "workshop"}


def test_upgrade_head_on_an_empty_database_matches_the_tables(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from sqldom.db.tables import metadata

    db = tmp_path / "build.db"
    migrate.upgrade(db)
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diffs == []


def test_the_known_revisions_are_exactly_the_migration_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", migrate.script_location())
    script = ScriptDirectory.from_config(cfg)
    assert script.get_heads() == [migrate.HEAD]
    chain = [rev.revision for rev in script.walk_revisions()][::-1]
    assert tuple(chain) == migrate.REVISIONS


def test_a_build_creates_every_spec_table_in_wal_mode(project: Project) -> None:
    project.write("a.txt", "A\n")
    assert project.build().code == 0
    tables = {r[0] for r in project.query("select name from sqlite_master where type='table'")}
    assert SPEC_TABLES <= tables
    assert project.query("pragma journal_mode")[0][0] == "wal"
    assert project.query("select version_num from alembic_version") == [(migrate.HEAD,)]


def test_a_database_from_a_newer_sqldom_is_refused_with_a_hint(project: Project) -> None:
    project.write("a.txt", "A\n")
    project.build()
    con = project.db()
    con.execute("update alembic_version set version_num = '9999'")
    con.commit()
    con.close()
    r = project.build()
    assert r.code == 2
    assert "newer" in r.stderr and "hint:" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_foreign_sqlite_database_is_left_untouched(project: Project) -> None:
    db = project.root / "var" / "build.db"
    db.parent.mkdir(parents=True)
    con = sqlite3.connect(db)
    con.execute("create table invoices (id integer primary key, total real)")
    con.execute("insert into invoices values (1, 9.5)")
    con.commit()
    con.close()
    before = db.read_bytes()
    project.write("a.txt", "A\n")
    r = project.build()
    assert r.code == 2
    assert "not a sqldom database" in r.stderr
    assert db.read_bytes() == before
    assert not (project.root / "build" / "a.txt").exists()


def test_a_file_that_is_not_sqlite_is_left_untouched(project: Project) -> None:
    db = project.root / "var" / "build.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is my diary, not a database\n" * 10)
    before = db.read_bytes()
    r = project.build()
    assert r.code == 2
    assert "var/build.db" in r.stderr and "not a SQLite database" in r.stderr
    assert db.read_bytes() == before


def test_an_empty_database_file_is_upgraded_to_head(project: Project) -> None:
    db = project.root / "var" / "build.db"
    db.parent.mkdir(parents=True)
    db.touch()
    project.write("a.txt", "A\n")
    assert project.build().code == 0
    assert project.query("select version_num from alembic_version") == [(migrate.HEAD,)]


def test_removing_a_step_cascades_to_its_rows(project: Project) -> None:
    project.write("a.md", "# A\n\n[](b.txt)\n")
    project.write("b.txt", "B\n")
    project.build()
    project.delete("a.md")
    project.build()
    for table, col in (("deps", "step"), ("facts", "path"), ("build", "step"), ("problems", "step")):
        assert project.query(f"select count(*) from {table} where {col} = 'a.md'") == [(0,)]


@pytest.mark.slow
def test_a_non_editable_install_in_a_fresh_venv_creates_the_database(tmp_path: Path) -> None:
    """The wheel carries the migrations: no repo checkout is needed at run time."""
    repo = Path(__file__).resolve().parents[2]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    # build from a copy so nothing of the checkout (src/, migrations/) can leak in at run time
    src = tmp_path / "src-copy"
    import shutil
    shutil.copytree(repo, src, ignore=shutil.ignore_patterns(".git", "build", "var", "*.egg-info", "__pycache__",
                                                             ".hypothesis", "bench"))
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(src)],
                   check=True, capture_output=True)
    shutil.rmtree(src)
    proj = tmp_path / "proj"
    (proj / "content").mkdir(parents=True)
    (proj / "content" / "a.md").write_text("# A\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import sqldom, sqldom.migrations as m; print(sqldom.__file__); "
                            "print(m.__file__)"], cwd=proj, capture_output=True, text=True, env=env, check=True)
    assert all(str(venv) in line for line in where.stdout.split()), where.stdout
    r = subprocess.run([str(py), "-m", "sqldom", "build"], cwd=proj, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert (proj / "var" / "build.db").is_file()
    assert (proj / "build" / "a.html").is_file()


def test_a_no_op_build_never_imports_sqlalchemy(project: Project) -> None:
    """The quiet run row is written through sqlite3 (see Store.record_quiet_run)."""
    project.write("a.md", "# A\n\n[](b.txt)\n")
    project.write("b.txt", "B\n")
    assert project.build().code == 0
    project.build()   # settles the stat cache of files written a moment ago
    code = ("import sys, pathlib; from sqldom.engine import BuildOptions, build; from sqldom.events import ListSink;"
            f"s = ListSink(); build(BuildOptions(root=pathlib.Path({str(project.root)!r})), s);"
            "print(len([e for e in s.events if e.event == 'step']), 'sqlalchemy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"]
    runs = project.query("select command, finished_at is not null, built from runs order by id")
    assert len(runs) == 3 and runs[-1] == ("build", 1, 0)


def test_the_quiet_run_row_has_the_columns_of_the_runs_table() -> None:
    from sqldom.db.tables import runs
    counts = {"built": 0, "restored": 0, "unchanged": 0, "deleted": 0, "failed": 0, "errors": 0}
    assert {"id", "command", "started_at", "finished_at", *counts} == {c.name for c in runs.columns}


def test_an_edit_never_imports_sqlalchemy_either(project: Project) -> None:
    """Every write of a build goes through sqlite3 (Store.record); SQLAlchemy only creates the schema."""
    project.write("a.md", "# A\n\n[](b.txt)\n")
    project.write("b.txt", "B\n")
    assert project.build().code == 0
    project.write("b.txt", "B, edited\n")
    code = ("import sys, pathlib; from sqldom.engine import BuildOptions, build; from sqldom.events import ListSink;"
            f"s = ListSink(); build(BuildOptions(root=pathlib.Path({str(project.root)!r})), s);"
            "print(len([e for e in s.events if e.event == 'step']), 'sqlalchemy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False"]   # b.txt, and a.md that shows its title


def test_every_row_the_store_writes_has_the_columns_of_its_table(project: Project,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's plain-SQL writes take column names from the rows' keys: they must be the tables' columns."""
    from sqldom.db import tables
    from sqldom.db.store import Store
    seen: dict[str, set[str]] = {}
    insert = Store._insert

    def spy(c: Any, table: str, rows: list[dict[str, Any]], verb: str = "insert",
            upsert_key: str | None = None) -> None:
        for r in rows:
            seen.setdefault(table, set()).update(r._fields if isinstance(r, tuple) else r)
        insert(c, table, rows, verb, upsert_key)

    monkeypatch.setattr(Store, "_insert", staticmethod(spy))
    project.write("a.md", "# A\n\n[](b.txt) [](missing.txt)\n")
    project.write("b.txt", "B\n")
    project.build_inproc()
    project.delete("b.txt")
    project.build_inproc()
    # (traces, deps and facts rows are tuples, inserted by statements that name their columns)
    assert {"sources", "steps", "build", "problems", "executions"} <= set(seen)
    for table, cols in seen.items():
        assert cols <= {c.name for c in tables.metadata.tables[table].columns}, table


def _schema(db: Path) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute("select type, name, tbl_name, sql from sqlite_master where name not like 'sqlite_%'"))
    finally:
        con.close()


def test_a_first_build_creates_the_schema_here_and_never_imports_alembic_or_sqlalchemy(tmp_path: Path) -> None:
    """Issue 7: Alembic and SQLAlchemy (~25 MiB, 0.5 s) stay out of the build process and its workers."""
    p = Project(tmp_path / "proj")
    p.write("a.md", "# A\n\n[](b.md)\n")
    p.write("b.md", "# B\n")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "sqldom", "build", "--json", "-C", str(p.root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in ("alembic", "sqlalchemy", "mako")}
    assert p.text("a.html") is not None and "<a href=\"b.html\">B</a>" in (p.text("a.html") or "")
    # the build made exactly the schema an upgrade makes
    here = tmp_path / "here.db"
    migrate.upgrade(here)
    assert _schema(p.root / "var" / "build.db") == _schema(here)
    assert migrate.current_revision(p.root / "var" / "build.db", "var/build.db") == migrate.HEAD


def test_the_snapshot_is_the_schema_upgrade_head_makes_statement_for_statement(tmp_path: Path) -> None:
    """A new migration needs a new snapshot: ``python -m sqldom.db.migrate --snapshot`` writes it."""
    from sqldom.db import snapshot

    here = tmp_path / "here.db"
    migrate.upgrade(here)
    con = sqlite3.connect(here)
    try:
        statements = migrate.schema_statements(con)
    finally:
        con.close()
    assert snapshot.REVISION == migrate.HEAD
    assert list(snapshot.STATEMENTS) == statements
    fresh = tmp_path / "fresh.db"
    migrate.create_fresh(fresh)
    assert _schema(fresh) == _schema(here)
    assert migrate.current_revision(fresh, "var/build.db") == migrate.HEAD
    con = sqlite3.connect(fresh)
    try:
        assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert con.execute("pragma page_size").fetchone()[0] == migrate.PAGE_SIZE
    finally:
        con.close()


def test_the_snapshot_maker_writes_the_shipped_snapshot_again(tmp_path: Path) -> None:
    """``python -m sqldom.db.migrate --snapshot`` (after a new migration) reproduces the file byte for byte."""
    from sqldom.db import snapshot

    made = tmp_path / "snapshot.py"
    migrate.write_snapshot(made)
    assert made.read_text(encoding="utf-8") == Path(snapshot.__file__).read_text(encoding="utf-8")


def test_an_older_database_is_upgraded_in_a_child_that_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "var" / "build.db"
    migrate.upgrade(db, "0003")
    con = sqlite3.connect(db)
    con.execute("insert into runs (id, command, started_at, built, restored, unchanged, deleted, failed, errors) "
                "values (1, 'build', 0, 0, 0, 0, 0, 0, 0)")
    con.commit()
    con.close()
    code = ("import sys; from pathlib import Path; from sqldom.db import migrate; "
            "migrate.ensure_schema(Path(sys.argv[1])); "
            "print(sorted(m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('alembic', 'sqlalchemy')))")
    proc = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"   # (the child imported them, not this process)
    assert migrate.current_revision(db, "var/build.db") == migrate.HEAD
    con = sqlite3.connect(db)
    try:
        assert con.execute("select id from runs").fetchall() == [(1,)]
    finally:
        con.close()


def test_a_database_killed_while_created_is_created_again(tmp_path: Path) -> None:
    """Creation is one transaction: a database left with no tables (and no version) is simply made again."""
    db = tmp_path / "var" / "build.db"
    db.parent.mkdir()
    con = sqlite3.connect(db)
    con.execute("pragma journal_mode=wal")
    con.close()
    migrate.ensure_schema(db)
    assert migrate.current_revision(db, "var/build.db") == migrate.HEAD


def test_when_the_child_cannot_run_the_upgrade_happens_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrate, "sqlalchemy_loaded", lambda: False)   # (this test process has it loaded)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    db = tmp_path / "var" / "build.db"
    migrate.upgrade(db, "0003")
    migrate.ensure_schema(db)
    assert migrate.current_revision(db, "var/build.db") == migrate.HEAD
