"""The schema of ``var/build.db``: the single source for migrations and queries.

These tables are a public interface (users read them with any SQLite client),
so names are plain words and every table says what one row is. A database is
only ever created by ``alembic upgrade head`` (see ``db/migrate.py``), never by
``metadata.create_all``, so fresh and upgraded databases take the same path.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

blobs = Table(
    "blobs",
    metadata,
    Column("hash", Text, primary_key=True, comment="xxh3-128 of data, hex"),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    comment="One row per distinct content (sources, outputs, trace results).",
)

sources = Table(
    "sources",
    metadata,
    Column("path", Text, primary_key=True, comment="relative to content/; ../build.py, ../sqldom.yaml"),
    Column("hash", Text, nullable=False, comment="blobs.hash of the file's bytes"),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("ctime_ns", BigInteger, nullable=False),
    Column("inode", BigInteger, nullable=False),
    Column("scanned_ns", BigInteger, nullable=False, comment="wall clock of the scan that hashed it"),
    comment="One row per file under content/ (plus build.py and sqldom.yaml) as last scanned.",
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("command", Text, nullable=False),
    Column("started_at", Float, nullable=False, comment="unix time"),
    Column("finished_at", Float, nullable=True, comment="NULL while running or if interrupted"),
    Column("built", Integer, nullable=False, default=0),
    Column("restored", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("deleted", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("errors", Integer, nullable=False, default=0),
    comment="One row per build invocation.",
)

steps = Table(
    "steps",
    metadata,
    Column("id", Text, primary_key=True, comment="source path, page output path or container step id"),
    Column("kind", Text, nullable=False, comment="document | page | command | container"),
    Column("status", Text, nullable=False, comment="outcome of the last run: built | restored | failed"),
    Column("last_run", Integer, ForeignKey("runs.id", ondelete="SET NULL"), nullable=True),
    Column("reason", Text, nullable=True, comment="why it last executed"),
    Column("parser", Text, nullable=True, comment="name of the parse function"),
    Column("writer", Text, nullable=True, comment="name of the write/page function"),
    Column("output", Text, nullable=True, comment="planned output path"),
    Column("image_tag", Text, nullable=True, comment="container step: <workshop.image>:<step-id>"),
    Column("image_digest", Text, nullable=True, comment="container step: manifest digest a learner pulls"),
    Column("image_id", Text, nullable=True, comment="container step: the engine's image ID (or OCI archive digest)"),
    Column("image_pushed", Text, nullable=True, comment="container step: the digest last pushed to the registry"),
    Column("position", Integer, nullable=True, comment="container step: 1-based place in the chain"),
    Column("title", Text, nullable=True, comment="container step: title of its doc"),
    Column("doc", Text, nullable=True, comment="container step: its doc, relative to content/"),
    Column("text", Text, nullable=True, comment="container step: its doc's Markdown"),
    comment="One row per step (a unit of work).",
)

deps = Table(
    "deps",
    metadata,
    Column("step", Text, ForeignKey("steps.id", ondelete="CASCADE"), primary_key=True),
    Column("phase", Text, primary_key=True, comment="parse | write"),
    Column("kind", Text, primary_key=True, comment="source | exists | fact | glob | code | spec | parent"),
    Column("target", Text, primary_key=True, comment="path, pattern or function name"),
    Column("key", Text, primary_key=True, comment="fact name; '' when none"),
    Column("hash", Text, nullable=False, comment="hash of the value read; 'absent' for a missing thing"),
    # covering: "who read X" and "did anyone read code X with another hash" never touch the table
    Index("ix_deps_target", "target", "kind", "hash", "step"),
    comment="One row per thing a step read in its last execution.",
    sqlite_with_rowid=False,   # (stored once, in key order: the largest table a build writes after blobs)
)

facts = Table(
    "facts",
    metadata,
    Column("path", Text, ForeignKey("steps.id", ondelete="CASCADE"), primary_key=True),
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False, comment="JSON"),
    Column("hash", Text, nullable=False),
    comment="One row per fact (title, links, front matter key) of a document.",
    sqlite_with_rowid=False,
)

build = Table(
    "build",
    metadata,
    Column("path", Text, primary_key=True, comment="relative to build/"),
    Column("hash", Text, nullable=False, comment="blobs.hash of the output's bytes"),
    Column("step", Text, ForeignKey("steps.id", ondelete="CASCADE"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=True, comment="stat of build/<path> when last mirrored"),
    Column("ctime_ns", BigInteger, nullable=True),
    Column("inode", BigInteger, nullable=True),
    Column("mirrored_ns", BigInteger, nullable=True),
    Index("ix_build_step", "step"),
    comment="One row per output file; build/ is a mirror of this table.",
)

traces = Table(
    "traces",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("step", Text, nullable=False),
    Column("phase", Text, nullable=False),
    Column("reads", Text, nullable=False, comment="JSON list of [kind, target, key, hash]"),
    Column("results", Text, nullable=False, comment="JSON: facts, or outputs and problems"),
    Column("outputs", Text, nullable=False, comment="JSON list of output blob hashes (keeps them alive)"),
    Column("run", Integer, nullable=False),
    Index("ix_traces_step", "step", "phase"),
    comment="One row per remembered execution (reads -> results), reused when every read matches again.",
)

executions = Table(
    "executions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step", Text, nullable=False),
    Column("outcome", Text, nullable=False, comment="built | restored | failed | deleted"),
    Column("reason", Text, nullable=True, comment="which read changed, from which hash to which"),
    Column("duration_ms", Float, nullable=False, default=0.0),
    Index("ix_executions_step", "step", "run"),
    comment="One row per step execution; history kept across runs.",
)

problems = Table(
    "problems",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run", Integer, nullable=False, comment="the run that found it"),
    Column("step", Text, ForeignKey("steps.id", ondelete="CASCADE"), nullable=False),
    Column("phase", Text, nullable=False),
    Column("path", Text, nullable=True),
    Column("line", Integer, nullable=True),
    Column("severity", Text, nullable=False, comment="error | warning"),
    Column("message", Text, nullable=False),
    Index("ix_problems_step", "step"),
    comment="One row per outstanding problem; re-reported by every build until fixed.",
)

probe = Table(
    "probe",
    metadata,
    Column("id", Integer, primary_key=True, comment="always 1: at most one row"),
    Column("builtin", Text, nullable=False, comment="identity of sqldom's built-in code that recorded it"),
    Column("config_files", Text, nullable=False,
           comment="JSON list of the project files (sqldom.yaml, build.py) whose stat the probe compares"),
    comment="Present when the last build's configuration lets the no-op probe (sqldom/probe.py) answer a "
            "build with nothing to do: no workshop, no container images, no pages.",
)

workshop = Table(
    "workshop",
    metadata,
    Column("name", Text, primary_key=True),
    Column("image", Text, nullable=False, comment="tag prefix of the step images"),
    Column("base_image", Text, nullable=False),
    Column("updated_run", Integer, nullable=True),
    Column("executor", Text, nullable=True, comment="podman | dagger: where the images were built"),
    Column("base_id", Text, nullable=True, comment="identity of the base image the chain was built FROM"),
    Column("steps", Integer, nullable=True, comment="number of steps in the chain"),
    comment="One row per container workshop.",
)
