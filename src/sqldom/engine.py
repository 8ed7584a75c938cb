"""One build: lock -> scan -> plan -> execute -> record -> mirror -> summary.

The engine owns the transactions. Document steps run in two phases: every
parse that is due runs first (source bytes -> facts), then every write that is
due (facts + what it reads through ``site`` -> one output). Because writes only
read facts and sources, never other outputs, this order is enough for early
cutoff: a re-parse that yields the same title leaves the pages that show that
title clean.

Which steps to look at is found from the changes (changed sources, facts,
globs, code) through the ``deps`` index; every candidate is then verified
read by read, so the reason shown is the read that changed. After a build that
did not finish, or when the rules changed, every step is verified.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from sqldom import stop
from sqldom.config import CONFIG_FILE, Config, load_config
from sqldom.db.batch import Batch, LazyRows
from sqldom.db.store import (
    BuildUpsert,
    Execution,
    OutputRow,
    Overlay,
    ProbeRow,
    SourceUpsert,
    StepRow,
    Store,
)
from sqldom.errors import UsageError
from sqldom.events import DeletedEvent, OutputEvent, ProblemEvent, Sink, StepEvent, SummaryEvent
from sqldom.fs import PackReader, Staged, prefetch
from sqldom.hashing import ABSENT, builtin_code_hash, hash_bytes
from sqldom.model import BUILT, FAILED, PARSE, RESTORED, WRITE, Problem, Read
from sqldom.packing import (
    ParseRecord,
    WriteRecord,
    fact_rows,
    outputs_json,
    pack_parse,
    pack_write,
    reads_from_json,
    reads_json,
    write_results,
)
from sqldom.plan import duplicate_outputs, path_clashes, verify
from sqldom.rules import Rule, RuleSet
from sqldom.scan import Recorded, ScanResult, Stat, content_files, scan, scan_paths
from sqldom.site import PRESENT, fact_of, glob_hash
from sqldom.timings import mark

if TYPE_CHECKING:
    from sqldom.mirror import Placer

BLOB_FLUSH_BYTES = 16 << 20
CONTAINER = "container"   # steps.kind of workshop steps: built by workshop/chain.py, not by the rules
GC_EVERY = 20   # runs between blob garbage collections (and watch batches between them)
PARALLEL_MIN = 64   # parses to execute before forking workers pays for itself
UNPACKED_KEPT = 512   # packed facts kept decoded (Current.unpacked)
FACTS_ASKED_KEPT = 16384   # single facts' answers kept (Current.fact)
SPILL_TRACES = 4096   # step rows a batch holds in memory before moving them to a file (Batch.spill)
# A build with at most this many traces to record (two per document: ~1 KiB each with their reads and
# facts) holds them all: spilling is for memory, and replaying the spilled parts is the record's time.
HOLD_TRACES = 32768
# A build with this many candidates gives freed memory back to the system as it goes (``memory.release``).
RELEASE_MIN = 2048


@dataclass(frozen=True)
class BuildOptions:
    root: Path
    full: bool = False
    verbose: bool = False
    command: str = "build"
    lock_wait: float = 5.0
    jobs: int = 0                  # parallel workers (document parses, command steps); 0: one per core
    from_step: str | None = None   # workshop: force this container step and all after it
    push: bool = False             # workshop: push every step image (as ``workshop.push: true``)


@dataclass(frozen=True)
class Project:
    root: Path

    @property
    def content(self) -> Path:
        return self.root / "content"

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def db(self) -> Path:
        return self.var / "build.db"

    @staticmethod
    def at(root: Path) -> Project:
        if not root.is_dir():
            raise UsageError(f"no such directory: {root}", hint="check the -C/--root argument")
        return Project(root.resolve())


class Desired(NamedTuple):
    """What a step should be now, according to the current rules (a tuple: one per source, every build)."""

    id: str
    kind: str                     # document | page
    parser: Rule | None
    writer: Rule
    output: str | None
    output_error: str | None = None


class NarrowDesired(Mapping[str, Desired]):
    """Every content source's desired step, made when first asked for (see ``Build.narrow_plan``)."""

    def __init__(self, hashes: dict[str, str], make: Callable[[str], Desired]) -> None:
        self._hashes = hashes
        self._make = make
        self._made: dict[str, Desired] = {}
        self._len: int | None = None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._hashes and not key.startswith("../")

    def __getitem__(self, key: str) -> Desired:
        if key not in self:
            raise KeyError(key)
        d = self._made.get(key)
        if d is None:
            d = self._made[key] = self._make(key)
        return d

    def __iter__(self) -> Iterator[str]:
        return (p for p in self._hashes if not p.startswith("../"))

    def __len__(self) -> int:
        if self._len is None:
            self._len = sum(1 for _ in self)
        return self._len


def assigned(path: str, rules: RuleSet) -> Desired:
    """The step a source gets under the current rules: a command step or a document step."""
    a = rules.assign(path)
    kind = "command" if a.writer.kind == "command" else "document"
    return Desired(path, kind, a.parser, a.writer, a.output, a.output_error)


_RANK = {RESTORED: 0, BUILT: 1, FAILED: 2}


@dataclass(slots=True)
class Outcome:
    """What happened to one step in this build (one per executed step: kept small)."""

    status: str = RESTORED   # the gravest of its phases: failed over built over restored
    reason: str = ""
    detail: str = ""
    ms: float = 0.0

    def mark(self, status: str) -> None:
        """One phase's result (a step's parse and its write each mark it)."""
        if _RANK[status] > _RANK[self.status]:
            self.status = status


class Current:
    """Current values of everything a step can read: the ``World`` of site.py."""

    def __init__(self, scan_result: ScanResult, store: Store, rules: RuleSet,
                 desired: Mapping[str, Desired]) -> None:
        self.scan = scan_result
        self.store = store
        self.rules = rules
        self.desired = desired
        self.code = rules.code_hashes()
        self.new_facts: dict[str, dict[str, Any]] = {}
        # new facts as canonical JSON, decoded when first read: how a worker holds every document's
        # facts (a quarter of the memory of 10,000s of dicts, most of which it never reads)
        # (a FactsFile once workers parse: see Build.parse_ahead)
        self.packed_facts: MutableMapping[str, str] = {}
        self.before_facts: Callable[[str], None] | None = None
        self._unpacked: dict[str, dict[str, Any]] = {}
        self._facts_cache: dict[str, dict[str, Any]] = {}
        self._facts_asked: dict[tuple[str, str], tuple[Any, str]] = {}
        self._paths: list[str] | None = None
        self._globs: dict[str, str] = {}
        self._images: dict[tuple[str, str], str] = {}

    # World
    def source_hash(self, path: str) -> str | None:
        if path.startswith("../"):
            return None
        return self.scan.hashes.get(path)

    def source_bytes(self, path: str) -> bytes:
        data = self.scan.data.get(path)
        if data is not None:
            return data
        return self.store.blob(self.scan.hashes[path])   # large files were streamed into blobs by the scan

    def facts(self, path: str) -> dict[str, Any] | None:
        if self.before_facts is not None:
            self.before_facts(path)   # a due parse of that document runs first
        if path in self.new_facts:
            return self.new_facts[path]
        if path in self.packed_facts:
            return self.unpacked(path)
        if path not in self.scan.hashes or path.startswith("../"):
            return None
        if path not in self._facts_cache:
            self.preload_facts([path])
        return self._facts_cache.get(path, {})

    def fact(self, path: str, name: str) -> tuple[Any, str]:
        """One fact and the hash its read records (``site.fact``), kept for the rest of the build.

        The writes of a big build ask for the same titles again and again (every
        link with empty text), and each answer decoded the target's facts and hashed
        the value. An answer holds for the whole build: ``facts`` runs a document's
        due parse before its facts are first read. Bounded (FACTS_ASKED_KEPT): at
        100,000 documents, keeping them all would cost tens of MiB per worker.
        """
        key = (path, name)
        got = self._facts_asked.get(key)
        if got is None:
            got = fact_of(self.facts(path), name)
            if len(self._facts_asked) >= FACTS_ASKED_KEPT:
                self._facts_asked.clear()
            self._facts_asked[key] = got
        return got

    def unpacked(self, path: str) -> dict[str, Any]:
        """Packed facts decoded, the last UNPACKED_KEPT of them kept: decoding them all would undo the packing."""
        facts = self._unpacked.pop(path, None)
        if facts is None:
            facts = json.loads(self.packed_facts[path])
            if len(self._unpacked) >= UNPACKED_KEPT:
                del self._unpacked[next(iter(self._unpacked))]
        self._unpacked[path] = facts   # (now the most recent)
        return facts

    def forget_facts(self) -> None:
        """Drop every document's facts held for this build (at 100,000 documents, tens of MiB)."""
        close = getattr(self.packed_facts, "close", None)
        if close is not None:
            close()
        self.new_facts, self.packed_facts, self._unpacked, self._facts_cache = {}, {}, {}, {}
        self._facts_asked = {}

    def preload_facts(self, paths: list[str]) -> None:
        want = [p for p in paths if p not in self._facts_cache and p not in self.new_facts
                and p not in self.packed_facts]
        if want:
            loaded = self.store.facts_of(want)
            for p in want:
                self._facts_cache[p] = loaded.get(p, {})

    def paths(self) -> list[str]:
        if self._paths is None:
            self._paths = sorted(p for p in self.scan.hashes if not p.startswith("../"))
        return self._paths

    def image(self, executor: str, image: str) -> str:
        """The identity of a container image now (podman's image ID), looked up once per build."""
        key = (executor, image)
        if key not in self._images:
            from sqldom.commands import image_identity
            self._images[key] = image_identity(executor, image) or ABSENT
        return self._images[key]

    def glob(self, pattern: str) -> str:
        if pattern not in self._globs:
            self._globs[pattern] = glob_hash(self, pattern)
        return self._globs[pattern]

    # verification
    def reader(self, step: str, phase: str) -> Callable[[Read], str]:
        def current(read: Read) -> str:
            kind = read.kind
            if kind == "source":
                return self.source_hash(read.target) or ABSENT
            if kind == "exists":
                return PRESENT if self.source_hash(read.target) is not None else ABSENT
            if kind == "fact":
                return self.fact(read.target, read.key)[1]
            if kind == "glob":
                return self.glob(read.target)
            if kind == "code":
                return self.code.get(read.target, ABSENT)
            if kind == "image":
                return self.image(read.key, read.target)
            if kind == "spec":
                d = self.desired.get(step)
                rule = None if d is None else (d.parser if phase == PARSE or read.key == "parse" else d.writer)
                return rule.spec_hash if rule is not None else ABSENT
            return ABSENT   # a kind this version does not know: re-run
        return current


class Session:
    """What stays warm between the builds of one process (``watch``).

    The open database, the loaded rules, and the snapshot of ``sources``,
    ``steps`` and ``build`` as last recorded, so a batch of changes costs work
    in proportion to the batch, not to the project. Any failure drops the
    snapshot (``forget``); the next build reads the database again.
    """

    def __init__(self, project: Project, options: BuildOptions, store: Store | None = None) -> None:
        self.project = project
        self.options = options
        self.store = store or Store(project.db)
        self.rules: tuple[Any, RuleSet, str | None] | None = None
        self.recorded: dict[str, Recorded] | None = None
        self.steps: dict[str, StepRow] | None = None
        self.outputs: dict[str, OutputRow] | None = None
        self.desired: tuple[RuleSet, dict[str, Desired]] | None = None
        # (the desired dict they describe, step -> output, output -> how many steps want it, outputs wanted twice;
        # counts, not sets of steps: a set per output was 200 bytes per step of a big site)
        self._claims: tuple[dict[str, Desired], dict[str, str], dict[str, int], set[str]] | None = None
        self.garbage_due = 0
        self._clashes: dict[str, tuple[str, str]] | None = None
        self.builtin_checked: dict[str, str] | None = None   # built-in code hashes every recorded read agrees with
        self.config_paths: set[str] | None = None            # recorded "../" sources (build.py, sqldom.yaml)
        self.one_shot = False   # one build, told which sources changed by the probe (Build.narrow_plan)
        self.snapshot = True    # keep the snapshot for the next build (False: none follows, as in `sqldom build`)

    def claims(self, desired: dict[str, Desired], changed: list[str] | None) -> dict[str, str]:
        """step -> output for the outputs that more than one step wants (what ``duplicate_outputs`` needs).

        Kept in step with ``desired`` incrementally: ``changed`` lists the steps
        added or removed since the last call on the same dict (None: rebuild).
        """
        if self._claims is None or self._claims[0] is not desired or changed is None:
            self._claims = (desired, {}, {}, set())
            changed = list(desired)
        _, by_step, wanted, shared = self._claims
        for s in changed:
            old = by_step.pop(s, None)
            if old is not None:
                n = wanted[old] - 1
                if n < 2:
                    shared.discard(old)
                if n:
                    wanted[old] = n
                else:
                    del wanted[old]
            d = desired.get(s)
            if d is not None and d.output is not None:
                by_step[s] = d.output
                wanted[d.output] = wanted.get(d.output, 0) + 1
                if wanted[d.output] > 1:
                    shared.add(d.output)
        return {s: out for s, out in by_step.items() if out in shared} if shared else {}

    def clashes(self, desired: dict[str, Desired], changed: list[str] | None) -> dict[str, tuple[str, str]]:
        """File/folder clashes between outputs; recomputed only when steps came or went."""
        if self._clashes is None or changed is None or changed:
            assert self._claims is not None
            self._clashes = path_clashes(self._claims[1])
        return self._clashes

    def build(self, sink: Sink, changed: set[str] | None = None, full: bool = False, mirror_all: bool = False) -> int:
        """One build; ``changed`` (content-relative paths) limits the scan to what a watcher (or the probe) reported.

        With ``changed``, only this build's writes are mirrored, unless ``mirror_all``.
        """
        options = self.options if not full else replace(self.options, full=True)
        try:
            return Build(self.project, self.store, options, sink, session=self, hint=changed,
                         mirror_all=mirror_all).run()
        except BaseException:
            self.forget()
            raise
        finally:
            md = sys.modules.get("sqldom.transforms.markdown")
            if md is not None:
                md.discard_prepared()   # templates of parses whose write did not happen

    def forget_claims(self) -> None:
        """Drop the output claims (two dicts as large as the project) when no build follows to reuse them."""
        self._claims = None
        self._clashes = None

    def forget(self) -> None:
        self.rules = None
        self.recorded = self.steps = self.outputs = None
        self.desired = None
        self._claims = None
        self._clashes = None
        self.builtin_checked = None
        self.config_paths = None

    def remember(self, batch: Batch, outputs: dict[str, OutputRow], sc: ScanResult) -> None:
        """Apply what was just recorded to the snapshot instead of reading it back."""
        recorded = self.recorded if self.recorded is not None else {}
        for path in batch.sources_delete:
            recorded.pop(path, None)
        for r in batch.sources_upsert:
            recorded[r.path] = Recorded(r.hash, r.size, r.mtime_ns, r.ctime_ns, r.inode, r.scanned_ns)
        if self.config_paths is not None:
            self.config_paths -= set(batch.sources_delete)
            self.config_paths |= {r.path for r in batch.sources_upsert if r.path.startswith("../")}
        steps = self.steps if self.steps is not None else {}
        for sid in batch.steps_delete:
            steps.pop(sid, None)
        for row in batch.steps_upsert:
            steps[row.id] = row
        for c in batch.containers_upsert:
            steps[c["id"]] = StepRow(c["id"], c["kind"], c["status"], c["parser"], c["writer"], c["output"],
                                     c["last_run"], c["reason"], c["image_tag"], c["image_digest"])
        self.recorded, self.steps, self.outputs = recorded, steps, outputs

    def changes_on_disk(self) -> set[str]:
        """A cheap full rescan (walk + stat): the content paths that differ from the snapshot.

        The watch's backstop against events a watcher can miss; it writes nothing.
        """
        recorded = self.recorded if self.recorded is not None else self.store.sources()
        self.recorded = recorded
        files = content_files(self.project.content)
        sc = scan(files, {p: r for p, r in recorded.items() if not p.startswith("../")})
        return sc.touched

    def close(self) -> None:
        self.store.close()


class StagedFiles(Mapping[str, Staged]):
    """Output hash -> where a worker left its bytes (``Staged``), for the placer or the mirror.

    Holds one int per output and each pack's name once: a 100,000-page build
    would otherwise hold 100,000 paths or tuples.
    """

    def __init__(self) -> None:
        self.packs: list[str] = []
        self.pack_index: dict[str, int] = {}
        self.where: dict[str, int] = {}   # hash -> (offset << 40 | length) << 16 | pack index

    def add(self, h: str, at: Staged) -> None:
        k = self.pack_index.get(at.pack)
        if k is None:
            k = self.pack_index[at.pack] = len(self.packs)
            self.packs.append(at.pack)
        if k >= 1 << 16 or not 0 <= at.length < 1 << 40 or at.offset < 0:
            return   # (never in practice; the mirror would write it from the database)
        self.where[h] = (at.offset << 40 | at.length) << 16 | k

    def __getitem__(self, h: str) -> Staged:
        n = self.where[h]
        return Staged(self.packs[n & 0xFFFF], n >> 56, n >> 16 & (1 << 40) - 1)

    def __iter__(self) -> Iterator[str]:
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)


@dataclass
class Plan:
    scan: ScanResult
    rules: RuleSet
    user_file: str | None
    prev: Mapping[str, StepRow]
    desired: Mapping[str, Desired]
    current: Current
    removed: list[str]
    candidates: set[str]
    full_verify: bool
    config: Config
    desired_changed: list[str] | None = None   # steps added/removed in a reused desired dict
    quiet: bool = False                          # nothing to execute: see Build.nothing_to_do
    narrow: bool = False                         # rows read on demand: see Build.narrow_plan


class Build:
    def __init__(self, project: Project, store: Store, options: BuildOptions, sink: Sink,
                 session: Session | None = None, hint: set[str] | None = None, mirror_all: bool = False) -> None:
        self.p = project
        self.store = store
        self.opts = options
        self.sink = sink
        self.session = session or Session(project, options, store)
        self.hint = hint
        self.mirror_all = mirror_all   # with a hint: check all of build/ anyway (the probe saw it differ)
        self.outcomes: dict[str, Outcome] = {}
        self.through_write: set[str] = set()   # steps whose output this build decided (or withdrew)
        self.failed_parses: dict[str, str] = {}   # step -> the reads of its parse, which failed in this build
        # work done ahead by forked workers (-j): parses are recorded as they arrive, writes taken in step order
        self.parsed_ahead: list[str] = []   # the due parses the workers ran
        self.pool: Any = None   # sqldom.workers.Pool
        self.write_todo: frozenset[str] = frozenset()
        self.write_traces: dict[str, list[Any]] | None = None
        self.staged: Path | None = None   # var/tmp/staged/: outputs the workers wrote (see staging_outputs)
        self.content_dir = str(project.content)   # (made once: a worker uses them for every document)
        self.tmp_dir = project.var / "tmp"
        self.staged_files = StagedFiles()   # output hash -> where a worker left its bytes in staged/
        self.writes_stream: Iterator[tuple[str, Any, float, Staged | None]] | None = None
        self.writes_left: set[str] = set()
        self.writes_got: dict[str, tuple[WriteRecord, float]] = {}
        self.packs = PackReader()   # the workers' packs, read back for the outputs' blobs
        self.spills = True   # whether the batch moves its step rows to a file as it grows (HOLD_TRACES)
        self.releases = False   # whether it hands freed memory back at phase ends (RELEASE_MIN)
        # a worker's pack (``_worker_start``); none in this process, which stages nothing when it
        # does a dead worker's writes itself
        self.pack, self.pack_at = "", 0
        self.pack_fd: int | None = None

    # ---- plan -----------------------------------------------------------

    def load_rules(self, config: Config, scan_result: ScanResult) -> tuple[RuleSet, str | None]:
        """The rules of build.py as it is now; loaded again only when its bytes changed."""
        key = (config.build_py, scan_result.hashes.get(f"../{config.build_py}"),
               scan_result.hashes.get(f"../{CONFIG_FILE}"))
        cached = self.session.rules
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        rules, user_file = self._load_rules(config)
        self.session.rules = (key, rules, user_file)
        return rules, user_file

    def _load_rules(self, config: Config) -> tuple[RuleSet, str | None]:
        build_py = self.p.root / config.build_py
        user_rules: list[Any] = []
        fingerprints: dict[str, str] = {}
        shown = None
        if build_py.is_file():
            from sqldom.usercode import load
            shown = config.build_py
            code = load(build_py, shown)
            user_rules, fingerprints = code.rules, code.fingerprints
        return RuleSet(user_rules, fingerprints, builtin_code_hash(), shown or "build.py",
                       commands=config.rules), shown

    @staticmethod
    def desired_of(path: str, row: StepRow | None, rules: RuleSet, rules_changed: bool) -> Desired:
        """A source's step: as recorded while the rules stay the same (no matching needed), else assigned."""
        by_name = rules.by_name
        if (not rules_changed and row is not None and row.kind in ("document", "command")
                and (row.parser is None or row.parser in by_name) and row.writer in by_name
                and row.output is not None):
            return Desired(path, row.kind, by_name[row.parser] if row.parser else None, by_name[row.writer],
                           row.output)
        return assigned(path, rules)

    def desired_steps(self, rules: RuleSet, current_paths: list[str], prev: Mapping[str, StepRow],
                      rules_changed: bool) -> dict[str, Desired]:
        desired: dict[str, Desired] = {}
        for path in current_paths:
            desired[path] = self.desired_of(path, prev.get(path), rules, rules_changed)
        for rule, output, error in rules.page_outputs():
            sid = output or rule.pattern
            if sid in desired:
                # a source already owns this id; the duplicate-output check reports the clash
                sid = f"{sid}#page"
            desired[sid] = Desired(sid, "page", None, rule, output, error)
        return desired

    # ---- the build ------------------------------------------------------

    def plan(self) -> Plan:
        """Scan and find the candidate steps; reads the database, writes nothing."""
        config = load_config(self.p.root)
        session = self.session
        extra: dict[str, tuple[str, Stat | None]] = {}
        for name in (CONFIG_FILE, config.build_py):
            f = self.p.root / name
            if f.is_file():
                extra[f"../{name}"] = (str(f), None)
        narrow = (self.hint is not None and session.one_shot and not self.mirror_all and config.workshop is None
                  and session.steps is None)
        if narrow:
            assert self.hint is not None
            known = self.store.source_hashes()
            config_paths = {p for p in known if p.startswith("../")} | set(extra)
            sc = scan_paths(self.p.content, self.hint, self.store.sources_of(set(self.hint) | config_paths),
                            extra, config_paths, self.store.store_file_blob, known=known)
            recorded: dict[str, Recorded] = {}
        else:
            recorded = session.recorded if session.recorded is not None else self.store.sources()
            if self.hint is not None:
                if session.config_paths is None:
                    session.config_paths = {p for p in recorded if p.startswith("../")}
                sc = scan_paths(self.p.content, self.hint, recorded, extra, session.config_paths | set(extra),
                                self.store.store_file_blob)
            else:
                sc = None
        if sc is None:
            if narrow:
                narrow, recorded = False, self.store.sources()
            self.hint = None   # a full walk
            files = content_files(self.p.content)
            files.update(extra)
            spill = self.store.insert_blobs if self.opts.command != "status" else None   # status writes nothing
            mark("walked")
            sc = scan(files, recorded, self.store.store_file_blob, spill, prefetch)
            mark("scanned")
        rules, user_file = self.load_rules(config, sc)
        config_touched = any(p.startswith("../") for p in sc.touched)
        unfinished = not self.store.last_run_finished()
        full_verify = self.opts.full or unfinished or config_touched
        if narrow and (full_verify or sc.added or sc.deleted or rules.pages or not self.store.narrow_allowed()):
            narrow, recorded = False, self.store.sources()
        if narrow:
            return self.narrow_plan(sc, rules, user_file, config)
        if not full_verify and self.nothing_to_do(config, sc, rules):
            session.recorded = recorded
            return Plan(sc, rules, user_file, {}, {}, Current(sc, self.store, rules, {}), [], set(), False,
                        config, quiet=True)
        prev = session.steps if session.steps is not None else self.store.steps()
        session.recorded, session.steps = recorded, prev
        if session.desired is not None and session.desired[0] is rules and not full_verify:
            # same rules as the last build of this session: only added and deleted sources change the steps
            desired = session.desired[1]
            for path in sc.deleted:
                desired.pop(path, None)
            for path in sc.added:
                desired[path] = assigned(path, rules)
            removed = sorted(p for p in sc.deleted if p in prev and prev[p].kind != CONTAINER)
            desired_changed: list[str] | None = sc.added + sc.deleted
        else:
            desired_changed = None
            content_paths = [p for p in sc.hashes if not p.startswith("../")]
            desired = self.desired_steps(rules, content_paths, prev, config_touched or unfinished)
            removed = sorted(s for s in set(prev) - set(desired) if prev[s].kind != CONTAINER)
        session.desired = (rules, desired)
        cur = Current(sc, self.store, rules, desired)
        if full_verify:
            cand = set(desired)
        else:
            cand = {c for c in self.candidates(sc, cur, desired, prev) if c in desired}
        return Plan(sc, rules, user_file, prev, desired, cur, removed, cand, full_verify, config, desired_changed)

    def narrow_plan(self, sc: ScanResult, rules: RuleSet, user_file: str | None, config: Config) -> Plan:
        """The plan of a one-shot build told which sources changed (the probe's handoff), read row by row.

        Taken only when no source came or went, the rules and sqldom.yaml are
        those of the last (finished) build, no step failed and none is a page
        or a container step: then no step is new or removed, no output can
        clash, and every step's row, desired step and output are needed only
        for the few candidates. So nothing is loaded whole: ``prev``,
        ``desired`` and the outputs are read on demand (``store.Lazy``), and
        an edit costs in proportion to what it touches, not to the project.
        """
        prev = self.store.lazy_steps()
        desired = NarrowDesired(sc.hashes, lambda path: self.desired_of(path, prev.get(path), rules, False))
        cur = Current(sc, self.store, rules, desired)
        cand = {c for c in self.candidates(sc, cur, desired, prev, narrow=True) if c in desired}
        return Plan(sc, rules, user_file, prev, desired, cur, [], cand, False, config, narrow=True)

    def nothing_to_do(self, config: Config, sc: ScanResult, rules: RuleSet) -> bool:
        """True when this build provably executes nothing and records nothing but its run row.

        Then the steps table is not loaded and no step is looked at: the usual
        no-op of a one-shot ``sqldom build``. It holds when no source changed or
        needs its row rewritten (racily clean), the rules are those of the last
        (finished) build, every source has exactly one step and there is no other
        (so none is new, removed or a page), no step failed (so none is retried
        and no output conflict stands), no built-in code changed, and nothing is
        read that the scan does not see (container images, workshop steps).
        """
        if self.session.steps is not None or self.hint is not None:
            return False    # a warm session (watch) has its own incremental bookkeeping
        if self.opts.from_step is not None or self.opts.push:
            return False    # workshop flags: checked (and refused without a workshop) on the normal path
        if sc.touched or sc.rehashed or sc.unreadable or rules.pages:
            return False
        if any(r.command is not None and r.command.image for r in rules.commands):
            return False
        if any(getattr(config, key, None) for key in ("workshop", "steps")):
            return False    # container workshops verify their chain on every build
        builtin = {n: h for n, h in rules.code_hashes().items() if n.startswith("builtin:")}
        if self.store.code_changed(builtin):
            return False
        n_sources = sum(1 for p in sc.hashes if not p.startswith("../"))
        return self.store.steps_match_sources(n_sources)

    @staticmethod
    def outputs_settled(plan: Plan) -> bool:
        """No output conflict can exist: the planned outputs are those of the last build, which had none.

        Same rules, no source added or removed, and no failed step (a conflict
        fails its loser, so a last build with one has a failed step). Saves a
        one-shot build from checking every output against every other.
        """
        sc = plan.scan
        if plan.narrow:
            return True   # (checked by narrow_plan's conditions)
        return (plan.desired_changed is None and not plan.full_verify and not sc.added and not sc.deleted
                and not any(row.status == FAILED for row in plan.prev.values()))

    def run(self) -> int:
        try:
            return self._run()
        finally:
            self.close_workers()
            self.drop_staged()
            cur = getattr(self, "cur", None)
            if cur is not None:
                cur.forget_facts()   # (closes the facts file of a watch session's big batch, too)

    def quiet_run(self, plan: Plan, t0: float) -> int:
        """A build with nothing to execute (``nothing_to_do``): check build/, report problems, record the run."""
        run_id = self.store.next_run_id()
        started_at = time.time()
        from sqldom.mirror import mirror
        stop.check()
        outputs = self.store.outputs()
        repaired = mirror(self.p.build, self.store, outputs, set(), set(), self.sink, full=True)
        unchanged = self.store.count_steps()
        return self.report(plan.scan, run_id, started_at, t0, {}, unchanged, 0, False, repaired,
                           probe=self.probe_row(plan))

    def _run(self) -> int:
        t0 = time.monotonic()
        plan = self.plan()
        if plan.quiet:
            return self.quiet_run(plan, t0)
        # the run's row is written with its results (one transaction), or alone at the end of a no-op
        run_id = self.store.next_run_id()
        started_at = time.time()
        batch = Batch(run=run_id)
        outputs_before, deleted_outputs, chain = self.execute(plan, batch, run_id)

        cur = plan.current
        if not self.session.snapshot:
            cur.forget_facts()   # (nothing reads them any more; at 100,000 documents, tens of MiB)
            self.session.forget_claims()
        self.release()
        mark("executed")
        placer = self.start_placer(batch)
        try:
            self.add_step_rows(plan, batch, run_id)

            # record
            stop.check()
            self.flush_blobs()
            recorded = not batch.empty()
            if recorded:
                try:
                    mark("record starts")
                    self.store.record(batch, command=self.opts.command, started_at=started_at)
                    mark("recorded")
                finally:
                    batch.close()
                    self.release()
        except BaseException:
            if placer is not None:
                placer.undo(self.p.build)   # (nothing recorded: build/ goes back to empty)
            raise
        try:
            return self.finish(plan, batch, run_id, started_at, t0, recorded, outputs_before, deleted_outputs,
                               chain, placer)
        finally:
            if placer is not None:
                placer.join()   # (never left moving files after the build)

    def execute(self, plan: Plan, batch: Batch, run_id: int
                ) -> tuple[Mapping[str, OutputRow], list[tuple[str, str]], Any]:
        """Execute what is due into ``batch``: returns the outputs as recorded before, the outputs
        this build deletes (with their step) and the workshop's chain result.

        A method of its own so that what only execution needs (the candidates, the
        recorded reads, sets of steps: at 100,000 documents, 4 MiB each) is gone
        before the record and the mirror, where a cold build peaks.
        """
        sc, user_file, prev, desired, cur, removed, cand = (plan.scan, plan.user_file, plan.prev, plan.desired,
                                                            plan.current, plan.removed, plan.candidates)
        plan.candidates = set()   # (consumed here)
        self.pending_blobs: dict[str, bytes] = {}
        self.pending_bytes = 0

        # sources: the bytes of files hashed this scan, as blobs (their rows are made just before the record)
        for path in sc.rehashed:
            data = sc.data.get(path)   # (large files are already in blobs)
            if data is not None:
                self.add_blob(sc.hashes[path], data)
        batch.sources_delete = list(sc.deleted)

        # Parses that are due run lazily: just before their own write (so the Markdown
        # tokens are still warm), or earlier when another step's write first reads their facts.
        deps = self.store.deps_of(cand) if cand else {}
        self.spills = 2 * len(cand) > HOLD_TRACES
        self.releases = len(cand) >= RELEASE_MIN
        self.user_file = user_file
        self.batch = batch
        self.desired = desired
        self.cur = cur
        self.parse_due = self.due_parses(cand, desired, deps, cur)
        cur.before_facts = self.ensure_parsed   # (set before parse_ahead forks: the workers' writes need it)
        mark("planned")
        self.parse_ahead()
        mark("parsed")
        self.write_ahead()
        write_cand = set(cand) | set(self.parse_due)
        maybe = {(x, "*") for x in list(self.parse_due) + removed}
        if maybe:
            write_cand |= self.store.steps_reading_facts(maybe)
        write_cand = {x for x in write_cand if x in desired}
        losers: dict[str, tuple[str, str]] = {}
        if not self.outputs_settled(plan):
            assert isinstance(desired, dict)   # (a narrow plan's outputs are settled)
            shared = self.session.claims(desired, plan.desired_changed)
            losers = {s: (w, f"output {desired[s].output} is produced by two steps, {w} and "
                             f"{self.step_label(s, desired[s])}; only {w} writes it")
                      for s, w in duplicate_outputs(shared).items()}
            for s, found in self.session.clashes(desired, plan.desired_changed).items():
                losers.setdefault(s, found)
        write_cand |= set(losers)
        extra = [x for x in write_cand if x not in cand]
        if extra:
            deps.update(self.store.deps_of(extra))
        outputs_before: Mapping[str, OutputRow]
        if plan.narrow:
            outputs_before = self.store.lazy_outputs()
        else:
            outputs_before = self.session.outputs if self.session.outputs is not None else self.store.outputs()
        self.write_phase(write_cand, desired, deps, cur, batch, user_file, losers, outputs_before, prev)
        mark("written")
        for x in sorted(self.parse_due):
            self.ensure_parsed(x)

        # steps that are gone
        batch.steps_delete = removed
        deleted_outputs: list[tuple[str, str]] = []

        def old_output(step: str) -> str | None:
            row = prev.get(step)
            path = row.output if row is not None else None
            owner = outputs_before.get(path) if path is not None else None
            return path if owner is not None and owner.step == step else None

        for s in removed:
            if (gone := old_output(s)) is not None:
                deleted_outputs.append((gone, s))
            batch.executions.append(Execution(run_id, s, "deleted", "source deleted" if prev[s].kind == "document"
                                              else "rule removed", 0.0))
        new_paths = {r.path for r in batch.build_upsert}
        # a step that went through the write phase without writing its old path withdrew it
        # (failure, conflict, new output template); after a rule change every step is looked at
        looked_at = set(desired) if plan.full_verify else self.through_write
        for s in looked_at:
            old = old_output(s)
            if old is not None and old not in new_paths and (desired[s].output != old or s in self.through_write):
                deleted_outputs.append((old, s))
        batch.build_delete = sorted({p for p, _ in deleted_outputs} - new_paths)

        # the workshop's chain of images, after the documents so that each step's doc title is current
        chain = self.run_workshop(plan, batch, outputs_before) if self.has_workshop(plan) else None

        # the workers have done their part; what they and this process kept for them goes
        self.close_workers()
        self.through_write, self.parse_due = set(), {}
        return outputs_before, deleted_outputs, chain

    def start_placer(self, batch: Batch) -> Placer | None:
        """A cold build's staged outputs start going into the empty build/ (``mirror.Placer``)."""
        if self.staged is None or not self.staged_files or not (self.hint is None or self.mirror_all):
            return None
        from sqldom.mirror import Placer
        return Placer.start(self.p.build, batch.build_upsert, self.staged_files, self.staged)

    def finish(self, plan: Plan, batch: Batch, run_id: int, started_at: float, t0: float, recorded: bool,
               outputs_before: Mapping[str, OutputRow], deleted_outputs: list[tuple[str, str]], chain: Any,
               placer: Placer | None) -> int:
        """After the record: garbage, events, the mirror and the report."""
        sc, desired = plan.scan, plan.desired
        # what nothing reads after the record: a row per step of a big build
        batch.executions, batch.step_executions = [], []
        # Blob garbage collection costs in proportion to the database, and traces keep the last few
        # versions of every output alive anyway: collect after deletions and every GC_EVERY runs.
        if recorded and (batch.steps_delete or batch.build_delete or run_id % GC_EVERY == 0):
            self.session.garbage_due += 1
            if self.hint is None or self.session.one_shot or self.session.garbage_due >= GC_EVERY:
                self.store.collect_garbage()
                self.session.garbage_due = 0

        # events for steps, in id order
        out_of: dict[str, str] = {}   # (a step's output; a list only for the rare step with several)
        more: dict[str, list[str]] = {}
        for r in batch.build_upsert:
            if r.step in out_of:
                more.setdefault(r.step, [out_of[r.step]]).append(r.path)
            else:
                out_of[r.step] = r.path
        build_delete = set(batch.build_delete)
        for s in sorted(self.outcomes):
            o = self.outcomes[s]
            d = desired[s]
            outs = more.get(s) or ([out_of[s]] if s in out_of else [])
            self.sink.emit(StepEvent(id=s, kind=d.kind, status=o.status, reason=o.reason, outputs=outs))
        if chain is not None:
            for event in chain.events:
                self.sink.emit(event)
            deleted_outputs.extend(chain.deleted)
        for path, step in sorted(set(deleted_outputs)):
            if path in build_delete:
                self.sink.emit(DeletedEvent(path=path, step=step))
        del out_of, more

        # mirror
        stop.check()
        from sqldom.mirror import mirror
        put = {r.path: r for r in batch.build_upsert}   # (the rows just recorded: stat not known yet)
        after: Mapping[str, OutputRow]
        if plan.narrow:
            after = Overlay(outputs_before, put, set(batch.build_delete))
        elif not outputs_before:
            after = put   # (a first build: no copy of 100,000s of rows)
        else:
            after = dict(outputs_before)
            for path in batch.build_delete:
                after.pop(path, None)
            after.update(put)
        mark("mirror starts")
        repaired = mirror(self.p.build, self.store, after, put.keys(),
                          set(batch.build_delete), self.sink, full=self.hint is None or self.mirror_all,
                          staged=self.staged_files if self.staged is not None else None,
                          placed=placer.join() if placer is not None else None)
        self.drop_staged()
        if plan.narrow or not self.session.snapshot:
            self.session.forget()   # nothing whole was loaded, or no build follows: the next one reads again
        else:
            assert isinstance(after, dict)
            self.session.remember(batch, after, sc)

        mark("mirrored")
        return self.report(sc, run_id, started_at, t0, self.outcomes, len(desired) - len(self.outcomes),
                           len(batch.build_delete), recorded, repaired, chain, probe=self.probe_row(plan))

    def add_step_rows(self, plan: Plan, batch: Batch, run_id: int) -> None:
        """The record's rows of steps (and their executions) and of the sources hashed this scan.

        A one-shot build makes them while the record writes them (at 100,000
        documents, tens of MiB it need not hold). A watch session keeps them, to
        update its snapshot.
        """
        desired, prev, sc, outcomes = plan.desired, plan.prev, plan.scan, self.outcomes

        def executed() -> Iterator[Execution]:
            for s, o in outcomes.items():
                yield Execution(run_id, s, o.status, o.detail or o.reason, round(o.ms, 3))

        def ran() -> Iterator[StepRow]:
            for s, o in outcomes.items():
                d = desired[s]
                yield StepRow(s, d.kind, o.status, d.parser.name if d.parser else None, d.writer.name, d.output,
                              run_id, o.reason)

        stayed: list[StepRow] = []
        if plan.full_verify:
            # keep planned outputs and rule names current for steps that stayed clean
            for s, d in desired.items():
                was = prev.get(s)
                if s not in outcomes and was is not None and (
                        was.parser != (d.parser.name if d.parser else None) or was.writer != d.writer.name
                        or was.output != d.output):
                    stayed.append(StepRow(s, d.kind, was.status, d.parser.name if d.parser else None,
                                          d.writer.name, d.output, was.last_run, was.reason))

        def hashed() -> Iterator[SourceUpsert]:
            for path in sc.rehashed:
                st = sc.stats[path]
                yield SourceUpsert(path, sc.hashes[path], st.size, st.mtime_ns, st.ctime_ns, st.inode, sc.started_ns)

        if self.session.snapshot:
            batch.steps_upsert, batch.sources_upsert = [*ran(), *stayed], list(hashed())
            batch.step_executions = list(executed())
        else:
            batch.steps_upsert = LazyRows(len(outcomes) + len(stayed), lambda: itertools.chain(ran(), stayed))
            batch.sources_upsert = LazyRows(len(sc.rehashed), hashed)
            batch.step_executions = LazyRows(len(outcomes), executed)

    @staticmethod
    def probe_row(plan: Plan) -> ProbeRow | None:
        """Whether the next one-shot build may be answered by the no-op probe, and what it compares.

        Not when this configuration reads what the probe does not look at:
        container images (command steps' and a workshop's) and pages (steps
        without a source). The rest (sources, outputs, failures, sqldom.yaml
        and build.py) the probe checks itself.
        """
        config, rules = plan.config, plan.rules
        if rules.pages or config.workshop is not None:
            return None
        if any(r.command is not None and r.command.image for r in rules.commands):
            return None
        return builtin_code_hash(), [CONFIG_FILE, config.build_py]

    def report(self, sc: ScanResult, run_id: int, started_at: float, t0: float, outcomes: dict[str, Outcome],
               unchanged: int, deleted: int, recorded: bool, repaired: int, chain: Any = None,
               probe: ProbeRow | None = None) -> int:
        """Problems and the summary; the run row is finished (or, for a build that recorded nothing, written)."""
        problems = self.store.problems()
        for pr in problems:
            self.sink.emit(ProblemEvent(severity=pr.severity, step=pr.step, path=pr.path, line=pr.line,
                                        message=pr.message))
        for path, why in sorted(sc.unreadable.items()):   # found by every scan until fixed
            self.sink.emit(ProblemEvent(severity="error", step=path, path=path, line=None, message=why))
        errors = sum(1 for pr in problems if pr.severity == "error") + len(sc.unreadable)
        built = sum(1 for o in outcomes.values() if o.status == BUILT)
        restored = sum(1 for o in outcomes.values() if o.status == RESTORED)
        failed = sum(1 for o in outcomes.values() if o.status == FAILED)
        if chain is not None:
            built, restored, failed = built + chain.built, restored + chain.restored, failed + chain.failed
            unchanged += chain.unchanged
        counts: dict[str, int] = {"built": built, "restored": restored, "unchanged": unchanged,
                                  "deleted": deleted, "failed": failed, "errors": errors}
        if recorded:
            self.store.finish_run(run_id, counts, probe)
        else:
            self.store.record_quiet_run(run_id, self.opts.command, started_at, counts, probe)
        self.sink.emit(SummaryEvent(built=built, restored=restored, unchanged=counts["unchanged"],
                                    deleted=counts["deleted"], failed=failed, errors=errors,
                                    seconds=round(time.monotonic() - t0, 3), repaired=repaired))
        # every failed step (a raising transform, an output conflict) leaves an error problem
        return 1 if (failed or errors) else 0

    def has_workshop(self, plan: Plan) -> bool:
        """A workshop to build, or one to forget (its steps are still recorded)."""
        if plan.config.workshop is not None:
            return True
        if self.opts.from_step is not None:
            raise UsageError(f"--from-step {self.opts.from_step}: sqldom.yaml declares no workshop",
                             hint="--from-step names a step of `steps:` in sqldom.yaml")
        return not plan.narrow and any(row.kind == CONTAINER for row in plan.prev.values())

    def run_workshop(self, plan: Plan, batch: Batch, outputs_before: Mapping[str, OutputRow]) -> Any:
        """Build the chain's due steps into ``batch``; returns its ``ChainResult``."""
        return self.workshop_chain(plan, batch, outputs_before).run()

    def workshop_chain(self, plan: Plan, batch: Batch, outputs_before: Mapping[str, OutputRow]) -> Any:
        """The workshop's ``Chain`` over this build's current values (``status`` asks it what is due)."""
        from sqldom import workshop
        from sqldom.workshop.chain import Chain, ChainInputs, ChainOptions

        cur, desired = plan.current, plan.desired
        written = {r.path: r.step for r in batch.build_upsert}
        gone = set(batch.build_delete)

        def other_outputs(path: str) -> str | None:
            if path in written:
                return written[path]
            row = outputs_before.get(path)
            return row.step if row is not None and path not in gone and row.step in desired else None

        def title_of(doc: str) -> str | None:
            facts = cur.facts(doc) or {}
            title = facts.get("title")
            return title if isinstance(title, str) else None

        ws = plan.config.workshop
        inputs = ChainInputs(
            root=self.p.root, workshop=ws, source_hash=cur.source_hash, source_paths=cur.paths,
            source_text=lambda path: cur.source_bytes(path).decode("utf-8"), title_of=title_of,
            is_executable=lambda path: os.access(self.p.content / path, os.X_OK),
            outputs_before=outputs_before, other_outputs=other_outputs, add_blob=self.add_blob,
            restorable=lambda h: bool(self.restorable(h)))
        options = ChainOptions(full=self.opts.full, from_step=self.opts.from_step, push=self.opts.push,
                               verbose=self.opts.verbose)
        return Chain(inputs, self.store, batch, options, self.sink,
                     lambda: workshop.chain_backend(plan.config.executor, scratch_root=self.p.var / "tmp"))

    def candidates(self, sc: ScanResult, cur: Current, desired: Mapping[str, Desired],
                   prev: Mapping[str, StepRow], narrow: bool = False) -> set[str]:
        cand = set(sc.added) | set(sc.changed)
        if not narrow:   # (a narrow plan has no new step and no failed one: see narrow_plan)
            cand |= {s for s in desired if s not in prev}
            cand |= {s for s, row in prev.items() if row.status == FAILED}
        touched = sc.touched
        if touched:
            cand |= self.store.steps_reading(touched, ("source", "exists"))
        if sc.added or sc.deleted:
            moved = [pat for pat, h in self.store.glob_patterns() if cur.glob(pat) != h]
            if moved:
                cand |= self.store.steps_with_glob(moved)
        has_images = any(r.command is not None and r.command.image for r in cur.rules.commands)
        images = self.store.image_reads() if has_images else []
        if images:
            moved_images = [(img, ex) for img, ex, h in images if cur.image(ex, img) != h]
            if moved_images:
                cand |= self.store.steps_with_image(moved_images)
        # build.py edits force a full verification (plan); here only the built-ins can have changed
        builtin = {n: h for n, h in cur.code.items() if n.startswith("builtin:")}
        if self.session.builtin_checked != builtin:
            changed_code = self.store.code_changed(builtin)
            self.session.builtin_checked = builtin if not changed_code else None
        else:
            changed_code = []
        if changed_code:
            cand |= self.store.steps_with_code(changed_code)
        return cand

    # ---- execution ----------------------------------------------------------

    def add_blob(self, h: str, data: bytes) -> None:
        if len(data) > BLOB_FLUSH_BYTES // 4 and self.store.has_blobs([h]):
            return   # a large output already stored (a copied large source): do not hold it again
        if h not in self.pending_blobs:
            self.pending_blobs[h] = data
            self.pending_bytes += len(data)
            if self.pending_bytes > BLOB_FLUSH_BYTES:
                self.flush_blobs()

    def flush_blobs(self) -> None:
        """Blobs are content-addressed, so writing them early is harmless if the build dies."""
        if self.pending_blobs:
            self.store.insert_blobs(self.pending_blobs)
            self.pending_blobs = {}
            self.pending_bytes = 0
            self.release()   # (16 MiB of outputs just freed)

    def release(self) -> None:
        """A big build gives what it just freed back to the system (``memory.release``)."""
        if self.releases:
            from sqldom.memory import release
            release()

    def outcome(self, step: str) -> Outcome:
        return self.outcomes.setdefault(step, Outcome())

    def due_parses(self, cand: set[str], desired: Mapping[str, Desired], deps: dict[tuple[str, str], list[Read]],
                   cur: Current) -> dict[str, tuple[str, str]]:
        """Document steps whose parse reads changed (or that never parsed), with the reason."""
        due: dict[str, tuple[str, str]] = {}
        for s in sorted(cand):
            d = desired[s]
            if d.kind != "document" or d.parser is None:
                continue
            reads = deps.get((s, PARSE))
            if reads and not self.opts.full:
                why = verify(reads, cur.reader(s, PARSE))
                if why is not None:
                    due[s] = why
            else:
                due[s] = ("--full", "--full") if self.opts.full and reads else ("new step", "new step")
        return due

    def ensure_parsed(self, s: str) -> None:
        """Run (or restore) one due parse; its facts become current for every later read."""
        why = self.parse_due.pop(s, None)
        if why is None:
            return
        from sqldom.executors.python import run_parse

        d, cur, batch = self.desired[s], self.cur, self.batch
        assert d.parser is not None
        t = time.perf_counter()
        o = self.outcome(s)
        o.reason, o.detail = why
        traces = [] if self.opts.full else self.store.traces_of([s], PARSE).get(s, [])
        trace = self.matching_trace(traces, cur.reader(s, PARSE))
        if trace is not None:
            facts = trace.results["facts"]
            cur.new_facts[s] = facts
            batch.deps[(s, PARSE)] = trace.reads_json
            batch.facts[s] = fact_rows(facts)
            batch.problems[(s, PARSE)] = [Problem.from_dict(p) for p in trace.results.get("problems", [])]
            o.mark(FAILED if trace.results.get("failed") else RESTORED)
            if trace.results.get("failed"):
                self.failed_parses[s] = trace.reads_json
        else:
            res = run_parse(s, d.parser, cur, self.user_file)
            cur.new_facts[s] = res.facts or {}
            self.record_parse(s, pack_parse(res), o)
        o.ms += (time.perf_counter() - t) * 1000

    def take_parsed(self, s: str, rec: ParseRecord, ms: float) -> None:
        """A worker's parse of a due step, recorded as it arrives, as ``ensure_parsed`` would have.

        Nothing of a parse depends on when it is recorded, so none waits for the
        serial pass: the batch can spill it, and this process does not hold every
        parse result of a big build at once.
        """
        o = self.outcome(s)
        o.reason, o.detail = self.parse_due.pop(s)
        o.ms += ms
        self.cur.packed_facts[s] = rec.facts   # (decoded if a later step reads them)
        self.record_parse(s, rec, o)
        if self.spills and len(self.batch.traces) >= SPILL_TRACES:
            self.batch.spill(self.p.var / "tmp")
            self.release()

    def record_parse(self, s: str, rec: ParseRecord, o: Outcome) -> None:
        batch = self.batch
        batch.deps[(s, PARSE)] = rec.reads
        batch.facts[s] = rec.fact_rows
        batch.problems[(s, PARSE)] = rec.problems
        o.mark(FAILED if rec.failed else BUILT)
        batch.traces.append((s, PARSE, rec.reads, rec.results, "[]", batch.run))
        if rec.failed:
            self.failed_parses[s] = rec.reads

    def parse_ahead(self) -> None:
        """Execute the due parses that no trace covers in forked workers, and record each as it arrives.

        Each result is recorded as the serial pass (``ensure_parsed``) would
        record it (``take_parsed``; the same packing), so the database and
        build/ do not depend on ``-j``. A worker also renders the
        template of each of its documents for the built-in Markdown writer
        (``markdown.prepare``) and keeps it for the write phase (``write_ahead``),
        which the same worker runs for the same documents.
        """
        if len(self.parse_due) < PARALLEL_MIN:
            return   # (before importing the workers: an edit never needs them)
        from sqldom import workers
        jobs = self.opts.jobs or workers.cores()
        if jobs < 2 or not workers.can_fork():
            return
        todo = sorted(self.parse_due)
        traces = {} if self.opts.full else self.store.traces_of(todo, PARSE)
        run = [s for s in todo if self.matching_trace(traces.get(s, []), self.cur.reader(s, PARSE)) is None]
        if len(run) < PARALLEL_MIN:
            return
        self.staged = self.staging_outputs()
        # The sources' bytes go to the database before the fork: each worker reads back only
        # its own documents, and neither it nor this process holds them all through the build.
        self.flush_blobs()
        self.cur.scan.data.clear()
        self.release()   # (the scan's leftovers: the workers would inherit them)
        self.hold_facts_in_file()
        self.load_transforms(run)
        try:
            self.pool = workers.Pool([self._parse_in_worker, self._write_in_worker], run, jobs,
                                     install=self._install, before=self._worker_start)
        except OSError:   # no fork now (process or memory limits): the serial pass does it all
            return
        for i, (s, rec, ms) in enumerate(self.pool.results(0)):
            if i % 256 == 0:
                stop.check()
                self.sink.progress(i, len(run), "parsing")
            assert s == run[i]   # (results come in item order)
            self.take_parsed(run[i], rec, ms)   # (this process's str: the worker's copy would be kept twice)
        self.parsed_ahead = run

    def load_transforms(self, steps: list[str]) -> None:
        """Import the built-in transforms these steps run (markdown-it and all) before the workers fork.

        Imported once and shared by every worker, instead of imported by each
        worker on its first document: a few MiB less per worker, and the CPU
        of one import instead of one per worker.
        """
        import importlib

        from sqldom.transforms import module
        importlib.import_module("sqldom.executors.python")
        for name in {r.builtin for s in steps for r in (self.desired[s].parser, self.desired[s].writer)
                     if r is not None and r.func is None and r.builtin}:
            module(name)

    def hold_facts_in_file(self) -> None:
        """The parses' facts go to a file the workers will share (``facts_file``), not into memory.

        Made before the fork, so that every worker can read it. Where no
        temporary file can be made, they stay in memory (and go to the workers whole).
        """
        from sqldom.facts_file import FactsFile
        try:
            held = FactsFile(self.tmp_dir)
        except OSError:
            return
        held.update(self.cur.packed_facts)
        self.cur.packed_facts = held

    def staging_outputs(self) -> Path | None:
        """A fresh var/tmp/staged/ where workers leave finished outputs (``_stage``) for build/.

        The placer (or the mirror) then writes them into build/ from there
        rather than from the database. None when var/ and build/ are on
        different filesystems (the mirror's temp files could not be renamed
        into build/), and then nothing is staged.
        """
        import shutil

        from sqldom.fs import staging_folder
        tmp = staging_folder(self.p.var, self.p.build)
        if tmp is None:
            return None
        staged = tmp / "staged"
        shutil.rmtree(staged, ignore_errors=True)   # a killed build's leftovers
        try:
            staged.mkdir()
        except OSError:
            return None
        return staged

    def drop_staged(self) -> None:
        if self.staged is not None:
            import shutil
            shutil.rmtree(self.staged, ignore_errors=True)
            self.staged = None
            self.staged_files = StagedFiles()

    def _worker_start(self) -> None:
        """First thing in a worker: its own database connection, and its own pack file under staged/.

        A worker appends each output it writes to its pack (``_stage``) rather
        than creating a file per output: creating files is most of the cost of
        placing them, and the placer does it while the record runs, when a core
        is free, instead of the workers while every core is busy.
        """
        self.store.reopen()
        if self.staged is not None:
            self.pack = os.path.join(self.staged, f"{os.getpid()}.pack")
            try:
                self.pack_fd = os.open(self.pack, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            except OSError:
                self.staged = None   # the mirror writes this worker's outputs from the database

    def _parse_in_worker(self, s: str) -> tuple[str, ParseRecord, float]:
        """Runs in a worker: one parse, and the Markdown template of the document when its writer is the built-in one.

        The result goes back packed (``packing``): the parent records it without decoding it.
        """
        from sqldom.executors.python import run_parse
        d = self.desired[s]
        assert d.parser is not None
        t = time.perf_counter()
        data = self.cur.scan.data[s] = self._source_again(s)   # read once, for the parse and the template
        try:
            res = run_parse(s, d.parser, self.cur, self.user_file)
            if not res.failed and d.writer.func is None and d.writer.builtin == "markdown" and d.kind == "document":
                from sqldom.transforms import markdown
                markdown.prepare(s, self.cur.scan.hashes[s], data, self.tmp_dir)
        finally:
            del self.cur.scan.data[s]
        return s, pack_parse(res), (time.perf_counter() - t) * 1000

    def _source_again(self, s: str) -> bytes:
        """In a worker: the bytes the scan hashed, from the file it read them from if they are still
        there (still in the page cache too: a third of the cost of the blobs table, where two
        workers read while this process writes), else from the blobs table."""
        if s not in self.cur.scan.big:
            try:
                with open(os.path.join(self.content_dir, s), "rb") as f:
                    data = f.read()
            except OSError:
                pass
            else:
                if hash_bytes(data) == self.cur.scan.hashes[s]:
                    return data
        return self.cur.source_bytes(s)

    def write_ahead(self) -> None:
        """Execute, in the same workers, the writes of the documents ``parse_ahead`` parsed.

        Every worker first receives every parse result, so it sees the same
        facts as the serial pass will; ``write_one`` takes a result when it
        comes to that step and finds no trace to restore (otherwise it is
        dropped). Results stream in step order, so few are held at once.
        """
        if self.pool is None:
            return
        todo = frozenset(s for s in self.pool.items if self._writes_in_python(s))
        if not todo:
            return
        from sqldom.facts_file import FactsFile
        held = self.cur.packed_facts
        facts = held.index() if isinstance(held, FactsFile) else {s: held[s] for s in self.parsed_ahead}
        self.pool.send((facts, todo))
        self.release()   # (the payload, pickled: tens of MiB at 100,000 documents)
        self.write_todo = todo
        self.writes_left = set(todo)
        self.writes_stream = (r for r in self.pool.results(1) if r is not None)

    def _install(self, payload: tuple[dict[str, str] | dict[str, int], frozenset[str]]) -> None:
        """In a worker, before its writes: the facts every parse produced, and which documents to write.

        The facts become current as ``ensure_parsed`` would make them; nothing
        else of a parse result matters to a write (and the worker records nothing).
        They come as the index of the parent's facts file (``FactsFile.index``),
        or, where it has none, whole.
        """
        from sqldom.facts_file import FactsFile
        facts, self.write_todo = payload
        for s in facts:
            self.parse_due.pop(s, None)
        held = self.cur.packed_facts
        if isinstance(held, FactsFile):
            held.adopt(cast(dict[str, int], facts))
        else:
            held.update(cast(dict[str, str], facts))

    def _writes_in_python(self, s: str) -> bool:
        d = self.desired[s]
        return d.kind == "document" and d.writer.kind == "writer" and d.output is not None and s not in self.failed_parses

    def _write_in_worker(self, s: str) -> tuple[str, WriteRecord, float, Staged | None] | None:
        """Runs in a worker: the write of one document, against the facts every parse produced.

        The output is also appended to this worker's pack, where the result
        says, for the placer (or the mirror) to write into build/. A staged
        output's bytes are then not sent back: the parent reads them from the
        pack (``written_ahead``). Results a quarter the size let the pipe hold
        four times as many, so a worker rarely waits while the parent stores a
        batch of blobs instead of reading its pipe.
        """
        if s not in self.write_todo:
            return None
        from sqldom.executors.python import run_write
        d = self.desired[s]
        assert d.output is not None
        t = time.perf_counter()
        res = run_write(s, d.writer, self.cur, d.output, False, self.user_file)
        rec, staged = pack_write(res), None
        if self.staged is not None and res.output is not None and res.output_hash is not None:
            staged = self._stage(res.output)
            if staged is not None:
                rec = rec._replace(output=None)
        return s, rec, (time.perf_counter() - t) * 1000, staged

    def _stage(self, data: bytes) -> Staged | None:
        """In a worker: append an output to its pack; None if it could not (the mirror then writes it).

        The parent learns where the bytes are only from the result that follows
        a complete write, so a killed worker's partial append is never read.
        """
        if self.pack_fd is None:
            return None
        # (an output whose bytes an earlier one of this worker had is appended again: rare, and a dict
        # of every output's place was 12 MiB per worker at 100,000 documents)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.pack_fd, view):]
        except OSError:
            os.close(self.pack_fd)
            self.pack_fd = None   # (a full disk: the rest come from the database)
            return None
        got = Staged(self.pack, self.pack_at, len(data))
        self.pack_at += len(data)
        return got

    def written_ahead(self, s: str) -> tuple[WriteRecord, float] | None:
        """The worker's result for step ``s``, if it wrote it; results before it are kept until asked for."""
        got = self.writes_got.pop(s, None)
        if got is not None or s not in self.writes_left or self.writes_stream is None:
            return got
        for step, rec, ms, staged in self.writes_stream:
            self.writes_left.discard(step)
            if staged is not None and rec.output_hash is not None:
                if rec.output is None:
                    try:
                        rec = rec._replace(output=self.packs.read(staged))
                    except OSError:   # (its pack cannot be read: this process writes that document itself)
                        if step == s:
                            return None
                        continue
                self.staged_files.add(rec.output_hash, staged)
            if step == s:
                return rec, ms
            self.writes_got[step] = (rec, ms)
        return None

    def close_workers(self) -> None:
        self.packs.close()
        self.writes_stream = None
        self.write_todo, self.writes_left, self.writes_got, self.write_traces = frozenset(), set(), {}, None
        if self.pool is not None:
            self.pool.close()   # kills and reaps the workers
            self.pool = None

    @staticmethod
    def matching_trace(traces: list[Any], current: Callable[[Read], str]) -> Any:
        for tr in traces:
            if all(current(r) == r.hash for r in tr.reads):
                return tr
        return None

    def write_phase(self, cand: set[str], desired: Mapping[str, Desired], deps: dict[tuple[str, str], list[Read]],
                    cur: Current, batch: Batch, user_file: str | None, losers: dict[str, tuple[str, str]],
                    outputs_before: Mapping[str, Any], prev: Mapping[str, StepRow]) -> None:
        # facts that candidates read, loaded in one query
        fact_targets = {r.target for s in cand for r in deps.get((s, WRITE), []) if r.kind == "fact"}
        cur.preload_facts(sorted(fact_targets))
        commands: list[tuple[str, tuple[str, str]]] = []
        order = sorted(cand)
        for i, s in enumerate(order):
            stop.check()
            self.sink.progress(i, len(order), "building")
            if self.spills and len(batch.traces) >= SPILL_TRACES:
                batch.spill(self.p.var / "tmp")
                self.release()
            self.ensure_parsed(s)
            d = desired[s]
            o = self.outcomes.get(s)
            if s in losers or d.output is None:
                msg = losers[s][1] if s in losers else d.output_error or "no output"
                prob = Problem(step=s, phase=WRITE, path=s if d.kind == "document" else None, message=msg)
                o = self.outcome(s)
                if not o.reason:
                    o.reason = "output conflict" if s in losers else "invalid output"
                o.mark(FAILED)
                self.through_write.add(s)
                batch.deps[(s, WRITE)] = "[]"
                batch.problems[(s, WRITE)] = [prob]
                continue
            if o is not None and o.status == FAILED and s in self.failed_parses:
                # the parser failed: no output, and nothing to write until the parse inputs change
                # (the write's reads: what the parse read, under the writer's own code and rule)
                self.through_write.add(s)
                assert d.parser is not None
                batch.deps[(s, WRITE)] = reads_json(
                    [r for r in reads_from_json(self.failed_parses[s]) if r.kind != "spec"] + [
                        Read("spec", "rule", "parse", d.parser.spec_hash),
                        Read("code", d.writer.name, "", d.writer.code_hash),
                        Read("spec", "rule", "", d.writer.spec_hash)])
                batch.problems[(s, WRITE)] = []
                continue
            reads = deps.get((s, WRITE))
            why: tuple[str, str] | None
            if reads and not self.opts.full:
                why = verify(reads, cur.reader(s, WRITE))
                if why is None:
                    owner = outputs_before.get(d.output)
                    if owner is not None and owner.step == s:
                        continue
                    was = prev.get(s)
                    if owner is None and was is not None and was.status == FAILED:
                        continue   # it failed on exactly these inputs: its problem stands, nothing to redo
                    why = (f"output {d.output} not recorded", f"output {d.output} not recorded")
            elif self.opts.full and reads:
                why = ("--full", "--full")
            else:
                why = ("new step", "new step") if s not in prev else ("not built yet", "not built yet")
            if d.kind == "command":
                commands.append((s, why))
            else:
                self.write_one(s, d, why, cur, batch, user_file)
        if commands:
            self.run_commands(commands, desired, cur, batch)

    def run_commands(self, todo: list[tuple[str, tuple[str, str]]], desired: Mapping[str, Desired], cur: Current,
                     batch: Batch) -> None:
        """Dirty command steps: restore what a trace covers, run the rest in parallel, record each."""
        from sqldom.commands import Planned, describe_error, describe_failure, run_all
        from sqldom.executors.base import ExecutorError

        planned = []
        for s, why in todo:
            d = desired[s]
            o = self.outcome(s)
            o.reason, o.detail = why
            reads = [Read("source", s, "", cur.source_hash(s) or ABSENT), Read("spec", "rule", "", d.writer.spec_hash)]
            rule = d.writer.command
            if rule is not None and rule.image is not None:
                ident = cur.image(rule.executor_name, rule.image)
                if ident != ABSENT:
                    reads.append(Read("image", rule.image, rule.executor_name, ident))
            trace = None if self.opts.full else self.matching_trace(self.store.traces_of([s], WRITE).get(s, []),
                                                                    cur.reader(s, WRITE))
            if trace is not None and trace.results.get("output") in self.restorable(trace.results["output"]):
                o.mark(RESTORED)
                self.record_write(s, d, batch, trace.reads_json, trace.results["output"], trace.results.get("size", 0),
                                  [Problem.from_dict(p) for p in trace.results.get("problems", [])])
                continue
            data = cur.source_bytes(s)
            assert d.writer.command is not None and d.output is not None
            planned.append((Planned(s, d.writer.command, s, d.output, data), reads))
        if not planned:
            return
        lock = threading.Lock()

        def on_output(step: str, line: str) -> None:
            with lock:
                self.sink.emit(OutputEvent(id=step, line=line))

        results = run_all([p for p, _ in planned], self.opts.jobs, self.p.var / "tmp",
                          on_output if self.opts.verbose else None)
        for p, reads in planned:
            s, d, o = p.step, desired[p.step], self.outcome(p.step)
            job, result = results[s]
            if isinstance(result, ExecutorError):
                # sqldom could not run it (no executor here): nothing recorded, so the next build retries
                o.mark(FAILED)
                self.record_write(s, d, batch, "[]", None, 0, [Problem(step=s, phase=WRITE, path=s, message=(
                    f"cannot run command step: {describe_error(result)}"))])
                continue
            o.ms += result.duration_ms
            out_name = job.outputs[0] if job is not None else p.output
            rj = reads_json(reads)
            if result.ok:
                data = bytes(result.outputs[out_name])
                made = hash_bytes(data)
                self.add_blob(made, data)
                h: str | None = made
                size = len(data)
                o.mark(BUILT)
                problems: list[Problem] = []
            else:
                o.mark(FAILED)
                h, size = None, 0
                problems = [Problem(step=s, phase=WRITE, path=s, message=describe_failure(result))]
            self.record_write(s, d, batch, rj, h, size, problems)
            batch.traces.append((s, WRITE, rj, write_results(h, size, problems, h is None), outputs_json(h),
                                 batch.run))

    def record_write(self, s: str, d: Desired, batch: Batch, reads: str, out_hash: str | None, size: int,
                     problems: list[Problem]) -> None:
        self.through_write.add(s)
        batch.deps[(s, WRITE)] = reads
        batch.problems[(s, WRITE)] = problems
        if out_hash is not None and d.output is not None:
            batch.build_upsert.append(BuildUpsert(d.output, out_hash, s, size))

    @staticmethod
    def step_label(s: str, d: Desired) -> str:
        return f"page {d.output} ({d.writer.name})" if d.kind == "page" else s

    def write_one(self, s: str, d: Desired, why: tuple[str, str], cur: Current, batch: Batch,
                  user_file: str | None) -> None:
        from sqldom.executors.python import run_write

        assert d.output is not None
        t = time.perf_counter()
        o = self.outcome(s)
        if not o.reason:
            o.reason, o.detail = why
        if self.opts.full:
            traces: list[Any] = []
        elif s in self.write_todo and self.pool is not None:
            if self.write_traces is None:   # one query for every write the workers do, not one per step
                self.write_traces = self.store.traces_of(sorted(self.write_todo), WRITE)
            traces = self.write_traces.get(s, [])
        else:
            traces = self.store.traces_of([s], WRITE).get(s, [])
        trace = self.matching_trace(traces, cur.reader(s, WRITE))
        if trace is not None and (trace.results.get("output") is None
                                  or trace.results["output"] in self.restorable(trace.results["output"])):
            out_hash = trace.results.get("output")
            problems = [Problem.from_dict(p) for p in trace.results.get("problems", [])]
            reads = trace.reads_json
            size = trace.results.get("size", 0)
            o.mark(FAILED if trace.results.get("failed") else RESTORED)
        else:
            ahead = self.written_ahead(s)
            if ahead is not None:
                rec, ms = ahead
                o.ms += ms
            else:
                rec = pack_write(run_write(s, d.writer, cur, d.output, d.kind == "page", user_file))
            out_hash, problems, reads, size = rec.output_hash, rec.problems, rec.reads, rec.size
            if rec.output is not None and out_hash is not None:
                self.add_blob(out_hash, rec.output)
            o.mark(FAILED if rec.failed else BUILT)
            batch.traces.append((s, WRITE, reads, rec.results, rec.outputs, batch.run))
        o.ms += (time.perf_counter() - t) * 1000
        self.record_write(s, d, batch, reads, out_hash, size, problems)

    def restorable(self, h: str) -> set[str]:
        if h in self.pending_blobs:
            return {h}
        return self.store.has_blobs([h])


def build(options: BuildOptions, sink: Sink) -> int:
    """Run one build under the project lock; returns the exit code (0 ok, 1 failed or errors)."""
    from sqldom.fs import ProjectLock

    project = Project.at(options.root)
    for folder in (project.content, project.build, project.var):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder.name} is a file, not a folder", path=folder.name,
                             hint=f"move it away; sqldom needs {folder.name}/ to be a folder")
    if not project.content.is_dir():
        project.content.mkdir(parents=True, exist_ok=True)
    with ProjectLock(project.var, options.lock_wait):
        return build_locked(project, options, sink)


def build_locked(project: Project, options: BuildOptions, sink: Sink) -> int:
    """One build by a caller that already holds the project lock.

    When the probe looked at this project moment ago (``sqldom build`` from
    the command line) and nobody built since, the scan takes its word for which
    sources changed instead of walking content/ again.
    """
    from sqldom import probe
    session = Session(project, options)
    session.snapshot = False   # one build: a snapshot of a big site for no later build would cost memory at its end
    try:
        handoff = probe.take_handoff(project.root)
        if (handoff is not None and handoff.changed and not (options.full or options.from_step or options.push)
                and session.store.next_run_id() - 1 == handoff.last_run):
            session.one_shot = True
            return session.build(sink, changed=set(handoff.changed), mirror_all=not handoff.build_intact)
        return session.build(sink)
    finally:
        session.close()

