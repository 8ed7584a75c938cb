"""Edit-to-output latency of ``sqldom watch`` on the benchmark corpus.

    python bench/watch_latency.py --docs 10000 --edits 20

Builds the corpus once, starts a real ``sqldom watch --json`` subprocess, then
for each edit measures from the moment the source file is written to the
moment the new output is on disk (polled every millisecond): a body edit
(one output) and a title edit of a document with several dependents (the
target's output and every dependent's output must show the new title).
Prints min / median / p90 and writes them to bench/watch-results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.corpus import (  # noqa: E402
    body_edit,
    copy_tree,
    default_generator,
    ensure_corpus,
    log,
    pick_body_target,
    pick_title_target,
    scan_corpus,
    title_edit,
)


class Watch:
    def __init__(self, root: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "sqldom", "watch", "--json", "-C", str(root)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def summary(self, timeout: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line.startswith("{") and json.loads(line).get("event") == "summary":
                return json.loads(line)
        raise TimeoutError("no summary from sqldom watch")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=60)


def wait_for(paths: list[Path], marker: bytes, timeout: float = 30.0) -> float:
    """Seconds (perf_counter) when every path contains ``marker``."""
    deadline = time.perf_counter() + timeout
    todo = list(paths)
    while todo:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{todo[0]} never showed {marker!r}")
        try:
            if marker in todo[-1].read_bytes():
                todo.pop()
                continue
        except OSError:
            pass
        time.sleep(0.001)
    return time.perf_counter()


def out_path(build: Path, md: str) -> Path:
    return build / (md[:-3] + ".html")


def stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    return {"min": xs[0], "median": statistics.median(xs), "p90": p90, "n": len(xs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--out", type=Path, default=HERE / "watch-results.md")
    a = ap.parse_args(argv)

    corpus = ensure_corpus(a.work, a.docs, a.seed, default_generator(HERE.parent))
    root = a.work / f"n{a.docs}-s{a.seed}" / "watch"
    if not (root / "var" / "build.db").exists():
        import shutil
        shutil.rmtree(root, ignore_errors=True)
        copy_tree(corpus, root / "content")
        log("cold build of the watch workspace ...")
        subprocess.run([sys.executable, "-m", "sqldom", "build", "-C", str(root)], check=True,
                       stdout=subprocess.DEVNULL)
    info = scan_corpus(root / "content")
    body_doc = pick_body_target(info)
    title_doc, dependents = pick_title_target(info, minimum=5)
    build = root / "build"
    originals = {d: (root / "content" / d).read_bytes() for d in (body_doc, title_doc)}

    w = Watch(root)
    try:
        w.summary(timeout=300)
        time.sleep(0.5)   # let the watcher register every folder
        body, title = [], []
        nonce = str(int(time.time()))
        for i in range(a.edits):
            tag = f"{nonce}x{i}"
            data = body_edit(originals[body_doc], tag)
            t0 = time.perf_counter()
            (root / "content" / body_doc).write_bytes(data)
            body.append(wait_for([out_path(build, body_doc)], f"edited{tag}".encode()) - t0)
            w.summary(timeout=30)
            time.sleep(0.1)
        for i in range(a.edits):
            tag = f"{nonce}y{i}"
            data, marker = title_edit(originals[title_doc], tag)
            targets = [out_path(build, title_doc)] + [out_path(build, d) for d in dependents]
            t0 = time.perf_counter()
            (root / "content" / title_doc).write_bytes(data)
            title.append(wait_for(targets, marker.encode()) - t0)
            w.summary(timeout=30)
            time.sleep(0.1)
    finally:
        for doc, data in originals.items():
            (root / "content" / doc).write_bytes(data)
        time.sleep(0.5)
        code = w.stop()

    rows = [("body edit (1 output)", stats(body)),
            (f"title edit ({len(dependents)} dependents + itself)", stats(title))]
    text = [f"# sqldom watch: edit-to-output latency, {a.docs} documents ({len(info.files)} files)", "",
            f"`python bench/watch_latency.py --docs {a.docs} --edits {a.edits}`, "
            f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores; watch exit code {code}.", "",
            "| edit | min | median | p90 | edits |", "|---|---:|---:|---:|---:|"]
    for name, s in rows:
        text.append(f"| {name} | {s['min'] * 1000:.0f} ms | {s['median'] * 1000:.0f} ms | "
                    f"{s['p90'] * 1000:.0f} ms | {s['n']:.0f} |")
    report = "\n".join(text) + "\n"
    print(report)
    a.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
