"""``status`` and ``explain``: the planner's answers, executing nothing.

Both reuse the engine's plan (scan, candidates, ``verify``), so what they say is
what ``build`` would do.
"""

from __future__ import annotations

import difflib
import json
import os
import time
from pathlib import Path
from typing import Any

import click

from sqldom.db.store import Store
from sqldom.engine import Build, BuildOptions, Project
from sqldom.errors import UsageError
from sqldom.events import ListSink
from sqldom.fs import walk_files
from sqldom.model import PARSE, WRITE
from sqldom.plan import verify


def _open(root: Path) -> tuple[Project, Store] | tuple[Project, None]:
    project = Project.at(root)
    if not project.db.exists():
        return project, None
    return project, Store(project.db)


def status(root: Path, as_json: bool) -> int:
    project, store = _open(root)
    items: list[dict[str, Any]] = []
    if store is None:
        n = sum(1 for _ in walk_files(project.content)) if project.content.is_dir() else 0
        items.append({"action": "build", "id": "*", "reason": f"no database yet: all {n} sources build"})
        return _print_status(items, [], as_json)
    try:
        items = _plan_items(project, store)
        problems = [p.as_dict() for p in store.problems()]
    finally:
        store.close()
    return _print_status(items, problems, as_json)


def _plan_items(project: Project, store: Store) -> list[dict[str, Any]]:
    b = Build(project, store, BuildOptions(root=project.root, command="status"), ListSink())
    plan = b.plan()
    cur = plan.current
    deps = store.deps_of(plan.candidates) if plan.candidates else {}
    items: list[dict[str, Any]] = []
    reparse: set[str] = set()
    will_build: set[str] = set()
    outputs = store.outputs()
    for s in sorted(plan.candidates):
        d = plan.desired[s]
        if s not in plan.prev:
            items.append({"action": "build", "id": s, "reason": "new step"})
            reparse.add(s)
            will_build.add(s)
            continue
        pr = deps.get((s, PARSE))
        why = verify(pr, cur.reader(s, PARSE)) if (d.kind == "document" and pr) else None
        if why:
            reparse.add(s)
        wr = deps.get((s, WRITE))
        why_w = verify(wr, cur.reader(s, WRITE)) if wr else ("not built yet", "")
        if why_w is None and d.output is not None and (outputs.get(d.output) is None
                                                       or outputs[d.output].step != s):
            why_w = (f"output {d.output} not recorded", "")
        reason = (why or why_w or ("", ""))[0]
        if why or why_w:
            items.append({"action": "build", "id": s, "reason": reason})
            will_build.add(s)
    changed = {(p, "*") for p in reparse | set(plan.removed)}
    if changed:
        for s in sorted(store.steps_reading_facts(changed) - will_build - set(plan.removed)):
            targets = sorted({r.target for (st, ph), reads in store.deps_of([s]).items() for r in reads
                              if r.kind == "fact" and (r.target in reparse or r.target in plan.removed)})
            items.append({"action": "maybe", "id": s,
                          "reason": f"reads facts of {', '.join(targets)}, which re-parse"})
    if plan.config.workshop is not None:
        from sqldom.db.batch import Batch
        chain = b.workshop_chain(plan, Batch(run=0), outputs)
        for sid, reason in chain.pending():
            items.append({"action": "build", "id": sid, "reason": reason})
    by_step = {row.step: path for path, row in outputs.items()}
    for s in plan.removed:
        items.append({"action": "delete", "id": s, "path": by_step.get(s),
                      "reason": "source deleted" if plan.prev[s].kind == "document" else "rule removed"})
    items.extend(_mirror_items(project, outputs))
    return items


def _mirror_items(project: Project, outputs: dict[str, Any]) -> list[dict[str, Any]]:
    on_disk = (dict(walk_files(project.build, skip_ignored=False, report_links=True))
               if project.build.is_dir() else {})
    items = []
    for path in sorted(set(on_disk) - set(outputs)):
        items.append({"action": "repair", "id": path, "path": path, "reason": "stray file in build/"})
    for path, row in sorted(outputs.items()):
        st = on_disk.get(path)
        if st is None:
            items.append({"action": "repair", "id": path, "path": path, "reason": "missing from build/"})
        elif (row.size, row.mtime_ns, row.inode) != (st.st_size, st.st_mtime_ns, st.st_ino):
            items.append({"action": "repair", "id": path, "path": path, "reason": "may have been modified"})
    return items


def _print_status(items: list[dict[str, Any]], problems: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        for it in items:
            click.echo(json.dumps({"event": "plan", **it}))
        for p in problems:
            click.echo(json.dumps({"event": "problem", **p}))
        return 0
    if not items:
        click.echo("up to date: the next build would execute nothing")
    for it in items:
        where = f" ({it['path']})" if it.get("path") and it["path"] != it["id"] else ""
        click.echo(f"{it['action']:7} {it['id']}{where}: {it['reason']}")
    if problems:
        click.echo(f"{len(problems)} outstanding problem{'s' if len(problems) != 1 else ''}:")
        for p in problems:
            where = f"{p['path'] or p['step']}:{p['line']}" if p.get("line") else (p["path"] or p["step"])
            click.echo(f"  {where}: {p['severity']}: {p['message'].splitlines()[0]}")
    return 0


def _find_step(store: Store, path: str) -> str:
    p = path.replace(os.sep, "/")
    for prefix in ("./", "content/", "build/"):
        if p.startswith(prefix):
            p = p[len(prefix):]
    if store.step(p) is not None:
        return p
    owner = store.output_owner(p)
    if owner is not None:
        return owner
    ids = list(store.steps()) + list(store.outputs())
    close = difflib.get_close_matches(p, ids, n=1)
    raise UsageError(f"no step or output named '{path}'",
                     hint=f"did you mean '{close[0]}'?" if close else "run 'sqldom status' to see the steps")


def explain(root: Path, path: str, as_json: bool) -> int:
    project, store = _open(root)
    if store is None:
        raise UsageError("nothing built yet", hint="run 'sqldom build' first")
    try:
        info = _explain(store, _find_step(store, path))
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return 0
    click.echo(f"step {info['id']} ({info['kind']})")
    if info["last_run"] is not None:
        click.echo(f"  last: {info['status']} in run {info['last_run']} at {info['last_run_at']}: {info['reason']}")
    for k in ("parser", "writer"):
        if info[k]:
            click.echo(f"  {k}: {info[k]}")
    for o in info["outputs"]:
        click.echo(f"  output: build/{o['path']} ({o['size']} bytes, hash {o['hash'][:12]})")
    for phase in (PARSE, WRITE):
        reads = info["reads"].get(phase, [])
        if reads:
            click.echo(f"  reads ({phase}):")
            for r in reads:
                key = f" {r['key']}" if r["key"] else ""
                click.echo(f"    {r['kind']:6} {r['target']}{key} = {r['hash'][:12]}")
    if info["facts"]:
        click.echo("  facts:")
        for k, v in info["facts"].items():
            text = json.dumps(v, ensure_ascii=False)
            click.echo(f"    {k} = {text if len(text) < 100 else text[:97] + '...'}")
    for p in info["problems"]:
        click.echo(f"  problem: {p['path'] or p['step']}:{p['line'] or ''} {p['severity']}: {p['message']}")
    if info["history"]:
        click.echo("  history:")
        for h in info["history"]:
            click.echo(f"    run {h['run']} ({h['at']}): {h['outcome']}: {h['reason']} [{h['ms']:.1f} ms]")
    return 0


def _when(ts: float | None) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else None


def _explain(store: Store, step_id: str) -> dict[str, Any]:
    row = store.step(step_id)
    assert row is not None
    deps = store.deps_of([step_id])
    facts = store.facts_of([step_id]).get(step_id, {})
    problems = [p.as_dict() for p in store.problems() if p.step == step_id]
    history = [{"run": r[0], "outcome": r[1], "reason": r[2], "ms": r[3], "at": _when(r[4])}
               for r in store.executions_of(step_id, 10)]
    return {
        "id": row.id, "kind": row.kind, "status": row.status, "reason": row.reason, "last_run": row.last_run,
        "last_run_at": _when(store.run_started(row.last_run)) if row.last_run else None,
        "parser": row.parser, "writer": row.writer,
        "outputs": [{"path": p, "hash": h, "size": n} for p, h, n in store.outputs_of(step_id)],
        "reads": {phase: [{"kind": r.kind, "target": r.target, "key": r.key, "hash": r.hash}
                          for r in deps.get((step_id, phase), [])] for phase in (PARSE, WRITE)},
        "facts": facts, "problems": problems, "history": history,
    }
