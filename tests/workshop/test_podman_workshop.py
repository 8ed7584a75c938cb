"""The example workshop on podman, end to end through the CLI: real buildah builds, real images.

Chain, tags, digests, outputs, a no-op rebuild, a mid-chain edit, doc metadata,
``--from-step``, a pruned image, a failing step, and a secret.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.project import Result
from tests.workshop.conftest import TOKEN, Workshop

STEPS = ("step-1-setup", "step-2-data", "step-3-secret")


def layers(ref: str) -> list[str]:
    out = subprocess.run(["podman", "image", "inspect", "--format", "{{json .RootFS.Layers}}", ref],
                         capture_output=True, text=True, check=True).stdout
    result: list[str] = json.loads(out)
    return result


def ok(r: Result) -> Result:
    assert r.code == 0, (r.problems, r.stderr)
    return r


def digests(ws: Workshop) -> dict[str, str]:
    return {s: str(ws.row(s)["image_digest"]) for s in STEPS}


def test_the_example_builds_a_chain_of_tagged_images_recorded_in_steps(workshop: Workshop) -> None:
    r = workshop.project.build()
    assert r.code == 0, r.stderr
    assert {s: r.steps[s] for s in STEPS} == dict.fromkeys(STEPS, "built")
    for i, step in enumerate(STEPS):
        row = workshop.row(step)
        assert row["kind"] == "container" and row["status"] == "built" and row["position"] == i + 1
        assert row["image_tag"] == workshop.tag(step)
        digest = str(row["image_digest"])
        assert digest.startswith("sha256:") and len(digest) == 71
        # both tags name the one image the row records
        short = f"{workshop.tag(step)}-{digest.removeprefix('sha256:')[:12]}"
        assert workshop.image_id(workshop.tag(step)) == workshop.image_id(short) == row["image_id"]
    # step N is built FROM step N-1: its layers start with all of the parent's
    for parent, child in zip(STEPS, STEPS[1:], strict=False):
        assert layers(workshop.tag(child))[:len(layers(workshop.tag(parent)))] == layers(workshop.tag(parent))
    assert layers(workshop.tag(STEPS[0]))[:1] == layers(workshop.base)
    # the doc is metadata on the row
    assert workshop.row("step-2-data")["title"] == "Count the lines of some data"
    assert workshop.row("step-2-data")["doc"] == "steps/02-data.md"
    assert "line counts" in str(workshop.row("step-2-data")["text"])
    # outputs: exported under build/<step-id>/, recorded in the build table
    p = workshop.project
    assert p.text("step-1-setup/workshop/hello.txt") == "Hello, world!\n"
    assert p.text("step-2-data/workshop/report/greeting.txt") == "Hello, data!\n"    # greet.sh and GREETING of step 1
    assert "3 /workshop/data/cities.csv" in (p.text("step-2-data/workshop/report/lines.txt") or "")
    assert p.text("step-3-secret/workshop/token-check.txt") == f"the token has {len(TOKEN)} characters\n"
    assert ("step-2-data/workshop/report/lines.txt", "step-2-data") in p.query("select path, step from build")
    # the JSON event names the image and digest (SPEC §3)
    event = next(e for e in r.events if e["event"] == "step" and e["id"] == "step-1-setup")
    assert event["kind"] == "container" and event["image"] == workshop.tag("step-1-setup")
    assert event["digest"] == workshop.row("step-1-setup")["image_digest"]
    assert p.query("select name, image, base_image, executor, steps from workshop") == [
        ("shell-workshop", workshop.image, workshop.base, "podman", 3)]


def test_a_second_build_builds_nothing(workshop: Workshop) -> None:
    ok(workshop.project.build())
    before = digests(workshop)
    r = workshop.project.build()
    assert r.code == 0 and r.steps == {}
    assert digests(workshop) == before


def test_editing_step_2_rebuilds_steps_2_and_3_and_keeps_step_1(workshop: Workshop) -> None:
    p = workshop.project
    first = p.build()
    assert first.code == 0, first.problems
    before = digests(workshop)
    p.write("code/data/cities.csv", "city,country\nLisbon,Portugal\nOslo,Norway\nRome,Italy\n")
    # status says so first, executing nothing
    status = p.cli("status", "-C", str(p.root)).stdout
    assert "step-2-data: files under code/data changed" in status
    assert "step-3-secret: if step-2-data gets a new digest" in status and "step-1-setup" not in status
    r = p.build()
    assert r.code == 0, r.stderr
    assert {s: st for s, st in r.steps.items() if s in STEPS} == {"step-2-data": "built", "step-3-secret": "built"}
    reasons = {e["id"]: e["reason"] for e in r.events if e["event"] == "step"}
    assert reasons["step-2-data"] == "files under code/data changed"
    assert reasons["step-3-secret"].startswith("parent step-2-data changed")
    after = digests(workshop)
    assert after["step-1-setup"] == before["step-1-setup"]
    assert after["step-2-data"] != before["step-2-data"]
    assert "4 /workshop/data/cities.csv" in (p.text("step-2-data/workshop/report/lines.txt") or "")
    # why, long after the run
    why = p.query("select reason from executions where step = 'step-2-data' order by run desc limit 1")[0][0]
    assert "code/data" in why


def test_editing_a_steps_command_in_sqldom_yaml_rebuilds_from_that_step(workshop: Workshop) -> None:
    p = workshop.project
    ok(p.build())
    workshop.edit_yaml("/workshop/greet.sh world", "/workshop/greet.sh everyone")
    r = p.build()
    assert {s: st for s, st in r.steps.items() if s in STEPS} == dict.fromkeys(STEPS, "built")
    assert r.steps["step-1-setup"] == "built"
    assert p.text("step-1-setup/workshop/hello.txt") == "Hello, everyone!\n"


def test_a_docs_title_and_text_update_the_row_without_building_an_image(workshop: Workshop) -> None:
    p = workshop.project
    ok(p.build())
    before = digests(workshop)
    run_before = workshop.row("step-2-data")["last_run"]
    p.write("steps/02-data.md", "---\ntitle: Count lines, quickly\n---\n\n# Count lines\n\nNew text.\n")
    r = p.build()
    assert r.code == 0
    assert not set(r.steps) & set(STEPS)        # no image was built
    row = workshop.row("step-2-data")
    assert row["title"] == "Count lines, quickly" and "New text." in str(row["text"])
    assert row["last_run"] == run_before and digests(workshop) == before


def test_from_step_rebuilds_that_step_and_the_rest_with_identical_digests(workshop: Workshop) -> None:
    p = workshop.project
    ok(p.build())
    before = digests(workshop)
    r = p.build("--from-step", "step-2-data")
    assert r.code == 0, r.stderr
    assert {s: st for s, st in r.steps.items() if s in STEPS} == {"step-2-data": "built", "step-3-secret": "built"}
    assert all(e["reason"] == "--from-step step-2-data" for e in r.events
               if e["event"] == "step" and e["id"] in STEPS)
    # reproducible commits: rebuilding unchanged steps gives the same digests
    assert digests(workshop) == before
    bad = p.build("--from-step", "step-9")
    assert bad.code == 2 and "no such workshop step" in bad.stderr and "step-2-data" in bad.stderr


def test_a_removed_tag_is_put_back_without_a_rebuild(workshop: Workshop) -> None:
    p = workshop.project
    ok(p.build())
    before = digests(workshop)
    subprocess.run(["podman", "untag", workshop.row("step-3-secret")["image_id"], workshop.tag("step-3-secret")],
                   check=True, capture_output=True)
    assert workshop.image_id(workshop.tag("step-3-secret")) is None
    r = ok(p.build())
    # the image itself is still in the store: it is re-tagged, not rebuilt
    assert {s: st for s, st in r.steps.items() if s in STEPS} == {"step-3-secret": "restored"}
    assert workshop.image_id(workshop.tag("step-3-secret")) == workshop.row("step-3-secret")["image_id"]
    assert digests(workshop) == before


def test_a_pruned_image_is_noticed_and_rebuilt(workshop: Workshop) -> None:
    p = workshop.project
    ok(p.build())
    before = digests(workshop)
    image_id = str(workshop.row("step-3-secret")["image_id"])
    subprocess.run(["podman", "rmi", "--force", image_id], check=True, capture_output=True)
    assert workshop.image_id(image_id) is None
    r = ok(p.build())
    assert {s: st for s, st in r.steps.items() if s in STEPS} == {"step-3-secret": "built"}
    assert "is gone from podman" in next(e["reason"] for e in r.events if e["event"] == "step")
    assert workshop.image_id(workshop.tag("step-3-secret")) == image_id     # reproducible: the same image again
    assert digests(workshop) == before


def test_a_failing_command_stops_the_chain_and_reports_its_output(workshop: Workshop) -> None:
    p = workshop.project
    ok(p.build())
    before = digests(workshop)
    workshop.edit_yaml("      - mkdir -p /workshop/report\n",
                       "      - echo to-stdout; echo to-stderr >&2; exit 3\n      - mkdir -p /workshop/report\n")
    r = p.build()
    assert r.code == 1
    assert {s: st for s, st in r.steps.items() if s in STEPS} == {"step-2-data": "failed"}
    [problem] = [pr for pr in r.problems if pr["step"] == "step-2-data"]
    msg = problem["message"]
    assert "exited with code 3" in msg and "to-stdout" in msg and "to-stderr" in msg
    assert "not built because of this: step-3-secret" in msg
    assert problem["path"] == "../sqldom.yaml" and problem["line"] is not None
    assert workshop.row("step-3-secret")["status"] == "blocked"
    assert p.output("step-2-data/workshop/report/lines.txt") is None     # a failed step has no outputs
    # nothing changed: not retried, still reported
    again = p.build()
    assert again.code == 1 and not set(again.steps) & set(STEPS)
    assert any(pr["step"] == "step-2-data" for pr in again.problems)
    # fixed (back to the original): step 2 comes back with its old digest, so step 3 stays as it was
    workshop.edit_yaml("      - echo to-stdout; echo to-stderr >&2; exit 3\n", "")
    fixed = p.build()
    assert fixed.code == 0, fixed.stderr
    assert fixed.steps.get("step-2-data") in ("built", "restored") and "step-3-secret" not in fixed.steps
    assert digests(workshop) == before
    assert workshop.row("step-3-secret")["status"] == "built"
    assert p.text("step-2-data/workshop/report/greeting.txt") == "Hello, data!\n"


def _bytes_under(folder: Path) -> list[tuple[Path, bytes]]:
    return [(f, f.read_bytes()) for f in folder.rglob("*") if f.is_file()]


def test_a_secret_reaches_the_command_and_nowhere_else(workshop: Workshop, tmp_path: Path) -> None:
    p = workshop.project
    workshop.edit_yaml('      - test -n "$API_TOKEN"\n', '      - test -n "$API_TOKEN"\n      - \'echo "shown: $API_TOKEN"\'\n')
    r = p.build("-v")
    assert r.code == 0, r.stderr
    # it reached the command's environment
    assert p.text("step-3-secret/workshop/token-check.txt") == f"the token has {len(TOKEN)} characters\n"
    token = TOKEN.encode()
    # what the command printed is shown with the value masked
    assert any(e.get("line") == "shown: ***" for e in r.events if e["event"] == "output")
    assert TOKEN not in r.stdout + r.stderr
    # never in the database (with its WAL), var/ or build/
    for folder in ("var", "build"):
        leaked = [f for f, data in _bytes_under(p.root / folder) if token in data]
        assert leaked == [], f"the secret leaked into {leaked}"
    # never in the image's config or history
    tag = workshop.tag("step-3-secret")
    inspect = subprocess.run(["podman", "image", "inspect", tag], capture_output=True, text=True, check=True)
    history = subprocess.run(["podman", "history", "--no-trunc", tag], capture_output=True, text=True, check=True)
    assert TOKEN not in inspect.stdout and TOKEN not in history.stdout
    assert "API_TOKEN" not in inspect.stdout
    # never in a layer: an uncompressed docker-archive of the image holds every layer's bytes
    archive = tmp_path / "image.tar"
    subprocess.run(["podman", "save", "--format", "docker-archive", "-o", str(archive), tag], check=True,
                   capture_output=True)
    assert token not in archive.read_bytes()


def test_a_secret_printed_by_a_failing_command_is_masked_in_the_problem(workshop: Workshop) -> None:
    p = workshop.project
    workshop.edit_yaml('      - test -n "$API_TOKEN"\n', '      - echo "oops $API_TOKEN" >&2; exit 9\n')
    r = p.build()
    assert r.code == 1
    [problem] = [pr for pr in r.problems if pr["step"] == "step-3-secret"]
    assert "oops ***" in problem["message"] and TOKEN not in problem["message"]
    assert [f for f, data in _bytes_under(p.root / "var") if TOKEN.encode() in data] == []


def test_a_missing_secret_stops_the_build_before_any_image_is_built(workshop: Workshop,
                                                                   monkeypatch: object) -> None:
    import pytest
    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.delenv("WORKSHOP_API_TOKEN")
    r = workshop.project.build()
    assert r.code == 2
    assert "sqldom.yaml:" in r.stderr and "WORKSHOP_API_TOKEN" in r.stderr and "export" in r.stderr
    assert workshop.image_id(workshop.tag("step-1-setup")) is None


def test_a_secret_read_from_a_file_outside_content(workshop: Workshop) -> None:
    p = workshop.project
    (p.root / "token.txt").write_text("file-token-5e1d\n")
    workshop.edit_yaml("env:WORKSHOP_API_TOKEN", "file:token.txt")
    r = ok(p.build())
    assert r.steps["step-3-secret"] == "built"
    assert p.text("step-3-secret/workshop/token-check.txt") == f"the token has {len('file-token-5e1d')} characters\n"
    assert [f for f, data in _bytes_under(p.root / "var") if b"file-token-5e1d" in data] == []
    # its value is not part of the key: a new token rebuilds nothing
    (p.root / "token.txt").write_text("another-token\n")
    assert ok(p.build()).steps == {}


def test_removing_a_step_or_the_workshop_removes_their_rows_and_outputs(workshop: Workshop) -> None:
    p = workshop.project
    ok(p.build())
    text = workshop.yaml()
    step3 = text[text.index("  - id: step-3-secret"):]
    workshop.edit_yaml(step3, "")
    r = ok(p.build())
    assert "step-3-secret/workshop/token-check.txt" in r.deleted
    assert p.output("step-3-secret/workshop/token-check.txt") is None
    assert p.query("select id from steps where kind = 'container' order by position") == [
        ("step-1-setup",), ("step-2-data",)]
    # no workshop at all: every container step and the workshop row go; the documents stay
    (p.root / "sqldom.yaml").write_text("executor: podman\n")
    r = ok(p.build())
    assert p.query("select count(*) from steps where kind = 'container'") == [(0,)]
    assert p.query("select count(*) from workshop") == [(0,)]
    assert not (p.root / "build" / "step-1-setup").exists()
    assert p.text("steps/01-setup.html") is not None


def test_watch_rebuilds_the_chain_from_the_edited_step(workshop: Workshop) -> None:
    from tests.support.watch import WatchProcess
    p = workshop.project
    with WatchProcess(p.root) as w:
        first = w.start(timeout=120)
        assert {s: st for s, st in first.steps.items() if s in STEPS} == dict.fromkeys(STEPS, "built")
        step1 = workshop.row("step-1-setup")["image_digest"]
        p.write("code/data/cities.csv", "city,country\nLisbon,Portugal\n")
        batch = w.until(lambda: "2 /workshop/data/cities.csv" in (p.text("step-2-data/workshop/report/lines.txt")
                                                                  or ""), timeout=120)
        executed = {s for s in batch.executed if s in STEPS}
        assert executed == {"step-2-data", "step-3-secret"}, list(batch)
        assert workshop.row("step-1-setup")["image_digest"] == step1
        assert w.stop() == 0
