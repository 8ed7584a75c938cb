#!/usr/bin/env python3
"""Benchmark sqldom against ninja (a cp-per-file floor) and Hugo on the generated corpus (issue 7).

    python bench/run.py --docs 10000                # the reference run (~10 min on 2 cores)
    python bench/run.py --docs 1000 --runs 1        # a quick look
    python bench/run.py --docs 100000 --no-refs     # scale: sqldom alone

Generates the corpus once per (docs, seed) under --work, finds or apt-installs ninja and Hugo, then
measures, for each tool in turn and --runs times each: cold build, no-op, one body edit, one title
edit of a document with >= 5 title dependents, a 1% batch edit, restore after ``rm -rf build/``
(sqldom only) and the peak RSS of the cold build.  Prints the medians with the ratios
sqldom/reference and writes the same, with the machine description, to --out (bench/results.md).
Not part of CI: tests/e2e/test_bench_smoke.py runs a 20-document version of it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.corpus import (  # noqa: E402
    CorpusInfo,
    body_edit,
    default_generator,
    ensure_corpus,
    log,
    pick_batch,
    pick_body_target,
    pick_title_target,
    scan_corpus,
    title_edit,
    tree_digest,
)
from bench.report import fmt_mib, fmt_ratio, fmt_seconds, machine, md_table, text_table  # noqa: E402
from bench.tools import (  # noqa: E402
    IDLE_WAITS,
    BuildFailed,
    Hugo,
    Ninja,
    Run,
    Sqldom,
    Tool,
    Trash,
    ensure_references,
    idle,
)

REFERENCES = ("ninja", "hugo")
EDITS = ("body", "title", "batch")


@dataclass
class Plan:
    info: CorpusInfo
    body_doc: str
    title_target: str
    dependents: list[str]
    batch: list[str]


@dataclass
class Outcome:
    tool: Tool
    runs: dict[str, list[Run]] = field(default_factory=dict)
    stale: list[int] = field(default_factory=list)      # stale dependents after each title edit
    error: str | None = None
    digest: tuple[str, int] | None = None

    def median(self, scenario: str) -> float | None:
        runs = self.runs.get(scenario)
        return statistics.median(r.seconds for r in runs) if runs else None

    def median_rss(self, scenario: str = "cold") -> float | None:
        runs = self.runs.get(scenario)
        return statistics.median(r.maxrss_mib for r in runs) if runs else None

    def median_tree(self, scenario: str = "cold") -> float | None:
        runs = self.runs.get(scenario)
        return statistics.median(r.tree_pss_mib for r in runs) if runs else None

    def summaries(self, scenario: str) -> list[dict[str, object]]:
        return [s for r in self.runs.get(scenario, []) if (s := r.summary()) is not None]


# ---- measuring one tool -----------------------------------------------------------------------------

def timed(out: Outcome, scenario: str, i: int, n: int) -> Run:
    """One timed build, after writing back whatever earlier steps left dirty in the page cache.

    Without the sync, the kernel writes back the workspace's copy of the corpus about 30 s
    after it was made, that is during the first cold build (it follows the 30 s wait): in
    session 14 that build was sqldom's slowest in every run (5.9 s against 3.7 s in one) and
    Hugo's in two runs of three.
    """
    os.sync()
    run = out.tool.build()
    out.runs.setdefault(scenario, []).append(run)
    extra = ""
    s = run.summary()
    if s is not None:
        extra = f"  built {s['built']}, restored {s['restored']}, repaired {s.get('repaired', 0)}"
    log(f"  {out.tool.name:6} {scenario:7} {i + 1}/{n}: {fmt_seconds(run.seconds):>8}  "
        f"cpu {fmt_seconds(run.cpu_seconds):>8}  peak {run.maxrss_mib:5.0f} MiB{extra}")
    return run


def bench_tool(tool: Tool, corpus: Path, plan: Plan, runs: int, nonce: str) -> Outcome:
    out = Outcome(tool)
    try:
        t0 = time.perf_counter()
        tool.setup(corpus)
        log(f"{tool.name}: workspace {tool.dir} ready in {time.perf_counter() - t0:.1f} s")

        for i in range(runs):                     # cold: fresh state every run
            tool.reset_cold()
            tool.trash.settle()
            timed(out, "cold", i, runs)
        if isinstance(tool, Sqldom):
            out.digest = tree_digest(tool.out)

        if tool.stateful:
            tool.build()                           # settle: the first build after a cold one
        for i in range(runs):
            timed(out, "noop", i, runs)

        for kind in EDITS:
            paths = {"body": [plan.body_doc], "title": [plan.title_target], "batch": plan.batch}[kind]
            for i in range(runs):
                tag = f"{kind}{i}{nonce}"          # never-seen bytes: no run is served from a cache
                if tool.stateful:
                    tool.build()                   # warm-but-clean state before the timed edit
                originals = {p: (tool.content / p).read_bytes() for p in paths}
                try:
                    marker = ""
                    for p, data in originals.items():
                        if kind == "title":
                            new, marker = title_edit(data, tag)
                        else:
                            new = body_edit(data, tag)
                        (tool.content / p).write_bytes(new)
                    timed(out, kind, i, runs)
                    if kind == "title" and tool.renders and plan.dependents:
                        stale = [d for d in plan.dependents if not is_fresh(tool, d, marker)]
                        out.stale.append(len(stale))
                        if stale:
                            log(f"  {tool.name}: STALE after the title edit: {', '.join(stale[:5])}")
                finally:
                    for p, data in originals.items():
                        (tool.content / p).write_bytes(data)
                if tool.stateful:
                    tool.build()                   # back to the pristine, built state

        if isinstance(tool, Sqldom):
            for i in range(runs):
                tool.build()
                tool.discard(tool.out)             # (moved aside, not deleted: see Trash)
                tool.trash.settle()
                timed(out, "restore", i, runs)
    except BuildFailed as e:
        out.error = str(e)
        log(f"{tool.name}: FAILED, skipping the rest of its scenarios:\n{e}")
    return out


def is_fresh(tool: Tool, md: str, marker: str) -> bool:
    path = tool.output_of(md)
    return path is not None and path.is_file() and marker in path.read_text(encoding="utf-8", errors="replace")


# ---- the -j 1 equivalence hook ------------------------------------------------------------------------

def jobs_equivalence(enabled: bool, sq: Sqldom, corpus: Path, digest: tuple[str, int] | None) -> str:
    """Issue 7: the cold build's output (default ``-j``: one worker per core) must be identical to ``-j 1``'s.

    Builds the same corpus again with ``-j 1`` in a second workspace and compares the
    build/ digests. On by default; ``--no-check-j1`` skips the extra cold build.
    """
    if digest is None:
        return "not measured (no sqldom cold build)"
    if not enabled:
        return "not compared (--no-check-j1)"
    extra = [a for a in sq.extra if not a.startswith(("-j", "--jobs"))]
    j1 = Sqldom(sq.dir.parent, sq.timeout, [*extra, "-j", "1"])
    j1.dir = sq.dir.parent / "sqldom-j1"
    j1.trash = sq.trash
    j1.setup(corpus)
    j1.reset_cold()
    j1.trash.settle()
    run = j1.build()
    got = tree_digest(j1.out)
    j1.discard(j1.dir)
    verdict = "identical" if got == digest else f"DIFFERENT (sha256:{got[0][:16]}…, {got[1]} files)"
    return f"-j 1 build ({fmt_seconds(run.seconds)}): {verdict}"


def compile_sqldom() -> str:
    """Write sqldom's bytecode once, as an installed package has it.

    With PYTHONDONTWRITEBYTECODE set (as in some sandboxes) an editable install would
    otherwise recompile every module on every run (~100 ms per build).
    """
    import compileall
    import importlib.util
    spec = importlib.util.find_spec("sqldom")
    if spec is None or not spec.submodule_search_locations:
        return "sqldom not importable here"
    folder = list(spec.submodule_search_locations)[0]
    compileall.compile_dir(folder, quiet=1)
    return folder


# ---- the report ---------------------------------------------------------------------------------------

def build_rows(plan: Plan, outcomes: dict[str, Outcome | str]) -> list[list[str]]:
    sq = outcomes["sqldom"]
    assert isinstance(sq, Outcome)

    def cell(name: str, scenario: str, rss: bool = False) -> str:
        o = outcomes.get(name)
        if not isinstance(o, Outcome):
            return "skipped"
        if scenario == "restore" and name != "sqldom":
            return "—"
        v = o.median_rss() if rss else o.median(scenario)
        if v is None:
            return "failed" if o.error else "—"
        return fmt_mib(v) if rss else fmt_seconds(v)

    def ratio(name: str, scenario: str, rss: bool = False) -> str:
        o = outcomes.get(name)
        if not isinstance(o, Outcome) or (scenario == "restore" and name != "sqldom"):
            return "—"
        if rss:
            return fmt_ratio(sq.median_rss(), o.median_rss())
        return fmt_ratio(sq.median(scenario), o.median(scenario))

    def stale(name: str) -> str:
        o = outcomes.get(name)
        if not isinstance(o, Outcome):
            return "skipped"
        if not o.tool.renders:
            return "n/a (renders nothing)"
        if not plan.dependents:
            return "n/a (no dependents)"
        if not o.stale:
            return "failed" if o.error else "—"
        worst = max(o.stale)
        return "no" if worst == 0 else f"YES ({worst} of {len(plan.dependents)})"

    d, k = len(plan.dependents), len(plan.batch)
    labels = [("cold", "cold build"), ("noop", "no-op"), ("body", "one body edit"),
              ("title", f"title edit ({d} dependents)"), ("batch", f"1% batch edit ({k} docs)"),
              ("restore", "restore after rm -rf build/")]
    rows = []
    for scenario, label in labels:
        rows.append([label, *(cell(t, scenario) for t in ("sqldom", *REFERENCES)),
                     *(ratio(t, scenario) for t in REFERENCES)])
    rows.append(["peak RSS, cold build", *(cell(t, "cold", rss=True) for t in ("sqldom", *REFERENCES)),
                 *(ratio(t, "cold", rss=True) for t in REFERENCES)])
    def tree(name: str) -> str:
        o = outcomes.get(name)
        v = o.median_tree() if isinstance(o, Outcome) else None
        return fmt_mib(v) if v else "—"

    sq_tree = sq.median_tree()
    rows.append(["peak memory of the process tree (PSS sum), cold", *(tree(t) for t in ("sqldom", *REFERENCES)),
                 *(fmt_ratio(sq_tree, o.median_tree()) if isinstance(o := outcomes.get(t), Outcome) else "—"
                   for t in REFERENCES)])
    rows.append(["stale after title edit?", *(stale(t) for t in ("sqldom", *REFERENCES)), "", ""])
    return rows


def goals(docs: int, outcomes: dict[str, Outcome | str], restore_ok: bool | None, j1: str) -> list[list[str]]:
    sq = outcomes["sqldom"]
    assert isinstance(sq, Outcome)
    ninja = outcomes.get("ninja")
    hugo = outcomes.get("hugo")
    rows: list[list[str]] = []

    def check(goal: str, value: float | None, limit: float | None, unit: str = "s", extra: str = "") -> None:
        if value is None or limit is None:
            rows.append([goal, "—" if value is None else fmt_seconds(value), "—", "not measured"])
            return
        show = fmt_mib if unit == "MiB" else fmt_seconds
        rows.append([goal, show(value), f"≤ {show(limit)}", ("met" if value <= limit else "NOT met") + extra])

    def ref(o: Outcome | str | None, scenario: str, factor: float) -> float | None:
        m = o.median(scenario) if isinstance(o, Outcome) else None
        return None if m is None else factor * m

    check("no-op ≤ 3× ninja no-op", sq.median("noop"), ref(ninja, "noop", 3))
    check("one body edit ≤ 4× ninja one edit", sq.median("body"), ref(ninja, "body", 4))
    check("title edit ≤ 1.2 × (4× ninja one edit)", sq.median("title"), ref(ninja, "body", 4.8))
    check("cold build ≤ 0.8× Hugo cold", sq.median("cold"), ref(hugo, "cold", 0.8))
    rows.append(["cold output identical to -j 1", "", "", j1])
    check("restore ≤ 0.5× sqldom cold", sq.median("restore"), ref(sq, "cold", 0.5),
          extra="" if restore_ok is None else ", no step executed" if restore_ok else ", BUT steps executed")
    check("peak RSS of cold build ≤ 250 MiB (largest process)", sq.median_rss(), 250.0, unit="MiB")
    check("peak memory of the cold build's processes (PSS sum) ≤ 250 MiB", sq.median_tree() or None, 250.0,
          unit="MiB")
    if docs >= 100_000:
        check("100k docs: no-op ≤ 2 s", sq.median("noop"), 2.0)
        check("100k docs: one edit ≤ 2.5 s", sq.median("body"), 2.5)
    return rows


# Seconds the bench sleeps before each tool and at the end, to see what others use of the CPU.
IDLE_PROBE = 3.0


def busy_elsewhere(load_start: float, cores: int) -> str:
    """Why this run's times may be inflated by other processes ("" if there is no sign of it).

    The measure is the CPU used while the bench itself ran nothing (``tools.IDLE_WAITS``: a
    few seconds before each tool and at the end, and the waits of ``Trash.settle``), not the
    load average, which counts the bench's own builds of the last minute; that at the start
    decides only where nothing was sampled.
    """
    if IDLE_WAITS:
        worst = max(IDLE_WAITS)
        return (f"other processes used up to {100 * worst:.0f}% of the CPU while the bench ran nothing"
                if worst > 0.25 else "")
    return f"load average {load_start:.1f} at start on {cores} cores" if load_start > 0.5 * cores else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--docs", type=int, default=10000, help="Markdown documents in the corpus (>= 10)")
    ap.add_argument("--seed", type=int, default=1, help="corpus seed")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of each scenario (the median is reported)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results.md", help="Markdown results file")
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "work",
                    help="work directory: corpus cache and the tools' workspaces (git-ignored)")
    ap.add_argument("--gen", type=Path, default=default_generator(REPO), help="gen_corpus.py")
    ap.add_argument("--refs", default=",".join(REFERENCES), help="references to run (comma-separated)")
    ap.add_argument("--no-refs", action="store_true", help="measure sqldom only")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install a missing reference")
    ap.add_argument("--sqldom-args", default="", help="extra arguments for `sqldom build`, e.g. '-j 2'")
    ap.add_argument("--no-check-j1", dest="check_j1", action="store_false",
                    help="skip the extra -j 1 cold build whose build/ must equal the (parallel) cold build's")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed for one build")
    args = ap.parse_args(argv)
    if args.docs < 10:
        ap.error("--docs must be >= 10")
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if not args.gen.is_file():
        ap.error(f"corpus generator not found: {args.gen} (give --gen PATH)")
    command = shlex.join(["python", *(sys.argv if argv is None else ["bench/run.py", *argv])])
    started = datetime.datetime.now().astimezone()
    load_start = os.getloadavg()

    refs = [] if args.no_refs else [r.strip() for r in args.refs.split(",") if r.strip()]
    unknown = sorted(set(refs) - set(REFERENCES))
    if unknown:
        ap.error(f"unknown reference(s): {', '.join(unknown)}; known: {', '.join(REFERENCES)}")

    work = args.work.resolve()
    corpus = ensure_corpus(work, args.docs, args.seed, args.gen.resolve())
    info = scan_corpus(corpus)
    target, dependents = pick_title_target(info)
    plan = Plan(info, pick_body_target(info), target, dependents, pick_batch(info, 0.01, args.seed))
    if len(dependents) < 5:
        log(f"corpus: no document has >= 5 title dependents; using {target} ({len(dependents)})")
    log(f"corpus: {info.n_files} files, {len(info.markdown)} Markdown; body edit {plan.body_doc}; "
        f"title edit {target} ({len(dependents)} title dependents, "
        f"{len(info.linkers.get(target, ()))} linkers); batch {len(plan.batch)} docs")

    base = work / f"n{args.docs}-s{args.seed}"
    exes = ensure_references(refs, install=not args.no_install) if refs else {}
    nonce = os.urandom(3).hex()
    sq = Sqldom(base, args.timeout, shlex.split(args.sqldom_args))
    tools: list[Tool] = [sq]
    outcomes: dict[str, Outcome | str] = {}
    for name in REFERENCES:
        exe = exes.get(name)
        if name not in refs:
            outcomes[name] = "not requested"
        elif not exe:
            outcomes[name] = "not found"
        else:
            tools.append(Ninja(base, args.timeout, exe) if name == "ninja" else Hugo(base, args.timeout, exe))

    trash = Trash(work / "trash")
    trash.empty()            # an earlier run's leftovers; settle() waits out the kernel's 30 s after this
    for t in tools:
        t.trash = trash
    compiled = compile_sqldom()
    log(f"sqldom bytecode written under {compiled}")
    versions = [t.version() for t in tools]
    for t in tools:
        idle(IDLE_PROBE)   # (what others use of the CPU: see busy_elsewhere)
        log(f"== {t.name} ==")
        outcomes[t.name] = bench_tool(t, corpus, plan, args.runs, nonce)
    idle(IDLE_PROBE)

    sq_out = outcomes["sqldom"]
    assert isinstance(sq_out, Outcome)
    j1 = "not measured"
    if sq_out.error is None:
        try:
            j1 = jobs_equivalence(args.check_j1, sq, corpus, sq_out.digest)
        except BuildFailed as e:
            j1 = f"-j 1 build failed: {e}"
    restore = sq_out.summaries("restore")
    restore_ok = all(s["built"] == 0 and s["failed"] == 0 for s in restore) if restore else None

    header = ["scenario (median)", "sqldom", "ninja", "hugo", "sqldom/ninja", "sqldom/hugo"]
    rows = build_rows(plan, outcomes)
    goal_rows = goals(args.docs, outcomes, restore_ok, j1)
    load_end = os.getloadavg()
    mach = machine() + [("load average", f"{load_start[0]:.2f} at start, {load_end[0]:.2f} at end (1 min)")]
    mach += [("tools", "; ".join(versions))]
    notes = make_notes(args, plan, outcomes, restore, j1, corpus)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    others = busy_elsewhere(load_start[0], cores)
    if others:
        notes.insert(0, f"**Busy machine**: {others}: other processes competed for the CPU, so times are "
                        "inflated and noisy (ratios less so, but still); rerun on a quiet machine for reference figures.")
    elif IDLE_WAITS:
        notes.insert(0, f"Quiet machine: other processes used {100 * max(IDLE_WAITS):.0f}% of the CPU at most "
                        f"while the bench ran nothing ({len(IDLE_WAITS)} samples; the load average at the "
                        "end counts the bench's own builds).")

    print()
    print(f"sqldom benchmark, {info.n_files} files ({len(info.markdown)} Markdown), "
          f"median of {args.runs} run(s), wall clock per build")
    for k, v in mach:
        print(f"  {k}: {v}")
    print()
    print(text_table(header, rows))
    print()
    for n in notes:
        print(f"- {n}")
    print()
    print(text_table(["goal (issue 7)", "sqldom", "target", "verdict"], goal_rows))

    md = [f"# sqldom benchmark: {args.docs:,} documents",
          "",
          f"Run on {started:%Y-%m-%d %H:%M %Z} with:",
          "",
          "```sh",
          command,
          "```",
          "",
          "## Machine",
          "",
          *(f"- **{k}**: {v}" for k, v in mach),
          "",
          f"## Results (median of {args.runs} run(s), wall clock of one build process)",
          "",
          md_table(header, rows),
          "",
          *(f"- {n}" for n in notes),
          "",
          "## Goals (issue 7)",
          "",
          md_table(["goal", "sqldom", "target", "verdict"], goal_rows),
          "",
          "## Every run",
          "",
          md_table(["tool", "scenario", "wall seconds", "CPU seconds (user+sys)", "peak RSS (MiB)",
                    "tree PSS (MiB)"],
                   raw_rows(outcomes), align_right=False),
          ""]
    errors = [f"- **{name}** failed: `{o.error.splitlines()[0]}`" for name, o in outcomes.items()
              if isinstance(o, Outcome) and o.error]
    if errors:
        md += ["## Failures", "", *errors, ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md))
    log(f"\nwrote {args.out}")
    trash.empty()
    log(f"emptied {trash.folder}")
    return 1 if sq_out.error else 0


def make_notes(args: argparse.Namespace, plan: Plan, outcomes: dict[str, Outcome | str],
               restore: list[dict[str, object]], j1: str, corpus: Path) -> list[str]:
    info = plan.info
    sq = outcomes["sqldom"]
    assert isinstance(sq, Outcome)
    n_txt = sum(f.endswith(".txt") for f in info.files)
    notes = [f"Corpus: `gen_corpus.py --docs {args.docs} --seed {args.seed}`: {len(info.markdown)} .md, "
             f"{n_txt} .txt, {info.n_files - len(info.markdown) - n_txt} assets ({info.n_files} files), "
             f"cached in `{shown(corpus)}`.",
             f"Edits: body = one word of `{plan.body_doc}`; title = front-matter title of `{plan.title_target}`, "
             f"which {len(plan.dependents)} documents link to with an empty-text link `[](…)` (its title "
             f"dependents; {len(info.linkers.get(plan.title_target, ()))} link to it in all); batch = one "
             f"word in each of {len(plan.batch)} documents. Every edit writes never-seen bytes and is "
             "reverted after its run; sqldom and ninja build once before each timed edit (warm and clean) "
             "and once after the revert."]
    steps = []
    for scenario in ("cold", "noop", "body", "title", "batch", "restore"):
        ss = sq.summaries(scenario)
        if ss:
            steps.append(f"{scenario} {statistics.median(int(str(s['built'])) for s in ss):g}")
    if steps:
        notes.append("sqldom steps executed (median `built` of the JSON summary): " + ", ".join(steps) + ".")
    if restore:
        built = [int(str(s["built"])) for s in restore]
        repaired = [int(str(s.get("repaired", 0))) for s in restore]
        ok = all(b == 0 for b in built)
        notes.append(f"Restore after `rm -rf build/`: {'no step executed' if ok else 'STEPS EXECUTED'} "
                     f"(built {built}, files written back {repaired}).")
    if sq.digest:
        notes.append(f"sqldom build/ digest after the cold build: sha256:{sq.digest[0]} ({sq.digest[1]} files). "
                     f"-j 1 equivalence: {j1}.")
    notes.append("Cold = fresh state (sqldom: no var/ and build/; ninja: no out/ nor .ninja_log; Hugo: no "
                 "public/), with the OS page cache warm. Every timed build starts after a `sync` (nothing left for the "
                 "kernel to write back meanwhile, such as the workspace's copy of the corpus). The trees a run removes (the previous run's output "
                 "and state, build/ before a restore) are moved aside and freed only when no build is timed, "
                 "then 31 s pass before the next timed build: on ext4 without a journal, inodes freed in the "
                 "last 30 s make every file creation slower (bench/tools.py, `Trash`). Peak RSS = max resident set of the largest process of "
                 "the build from wait4(), what `/usr/bin/time -v` reports; tree PSS = the peak of the summed "
                 "proportional set size of the build process and all its descendants (sqldom's forked workers "
                 "share the parent's pages copy-on-write), sampled every 0.1 s from /proc.")
    notes.append(f"sqldom runs with its default `-j` (one worker per core: {os.cpu_count()}) unless "
                 "`--sqldom-args` says otherwise; its bytecode is compiled once before measuring "
                 "(PYTHONDONTWRITEBYTECODE would otherwise make every run recompile sqldom).")
    if isinstance(outcomes.get("ninja"), Outcome):
        notes.append("ninja: `build.ninja` with one `cp` per corpus file (renders nothing), default `-j` "
                     "(nproc + 2); one edit rewrites a source file.")
    if isinstance(outcomes.get("hugo"), Outcome):
        notes.append("Hugo: minimal site, `.md` in content/, the .txt notes and binary assets in static/ "
                     "(copied), `uglyURLs`, `buildFuture` (the corpus has dates up to late 2025), taxonomies/"
                     "RSS/sitemap/robots/404 disabled, a link render hook filling empty links with the target's "
                     "title; Hugo keeps no incremental state, so every run is a full build (no-op = rerun).")
    for name, o in outcomes.items():
        if isinstance(o, str) and name in REFERENCES:
            notes.append(f"{name}: skipped ({o}).")
    return notes


def shown(path: Path) -> str:
    try:
        return path.relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


def raw_rows(outcomes: dict[str, Outcome | str]) -> list[list[str]]:
    rows = []
    for name, o in outcomes.items():
        if not isinstance(o, Outcome):
            continue
        for scenario, runs in o.runs.items():
            rows.append([name, scenario, ", ".join(f"{r.seconds:.3f}" for r in runs),
                         ", ".join(f"{r.cpu_seconds:.3f}" for r in runs),
                         ", ".join(f"{r.maxrss_mib:.0f}" for r in runs),
                         ", ".join(f"{r.tree_pss_mib:.0f}" for r in runs)])
    return rows


if __name__ == "__main__":
    sys.exit(main())
