"""The executor contract's pure parts: templates, job validation, result wording, bounded streams."""

from __future__ import annotations

import pytest

from sqldom.executors.base import CommandJob, CommandResult, ExecutorError, placeholders, render_command
from sqldom.executors.streams import Tail


def render(template: str, input: str | None = "in.scss", inputs: tuple[str, ...] = ("in.scss",),
           outputs: tuple[str, ...] = ("out.css",)) -> str:
    return render_command(template, input=input, inputs=inputs, outputs=outputs)


def test_placeholders_are_replaced_by_shell_quoted_paths() -> None:
    assert render("sassc {input} {output}", input="a b;rm -rf x.txt", outputs=("o $x.css",)) == \
        "sassc 'a b;rm -rf x.txt' 'o $x.css'"
    assert render("cat {inputs} > {output}", inputs=("a", "b c")) == "cat a 'b c' > out.css"
    assert render("touch {outputs}", outputs=("x", "y z")) == "touch x 'y z'"


def test_a_path_that_looks_like_an_option_stays_a_path() -> None:
    assert render("rm {input}", input="-rf") == "rm ./-rf"


def test_other_braces_reach_the_shell_untouched() -> None:
    cmd = "awk '{print $1}' {input} > {output}; echo ${HOME} {a,b} {{input}} {Input}"
    assert render(cmd) == "awk '{print $1}' in.scss > out.css; echo ${HOME} {a,b} {in.scss} {Input}"
    assert placeholders(cmd) == {"input", "output"}


def test_a_placeholder_with_nothing_to_fill_it_is_refused() -> None:
    with pytest.raises(ExecutorError, match=r"uses \{input\} but the step has no input"):
        render("cat {input}", input=None)
    with pytest.raises(ExecutorError, match=r"uses \{output\} but the step declares no output"):
        render("cat > {output}", outputs=())


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "", "a//b", "./a", "a/", "a\\b", "a\0b"])
def test_job_paths_stay_inside_the_working_directory(path: str) -> None:
    with pytest.raises(ExecutorError, match="must be a relative path inside the working directory"):
        CommandJob(step="s", command="true", inputs={path: b""})
    with pytest.raises(ExecutorError, match="must be a relative path inside the working directory"):
        CommandJob(step="s", command="true", outputs=(path,))


def test_job_validation_names_the_step() -> None:
    with pytest.raises(ExecutorError, match="step s: input 'b' is not among the job's inputs"):
        CommandJob(step="s", command="true", inputs={"a": b""}, input="b")
    with pytest.raises(ExecutorError, match="bad environment variable name 'A=B'"):
        CommandJob(step="s", command="true", env={"A=B": "1"})
    with pytest.raises(ExecutorError, match="an output is declared twice"):
        CommandJob(step="s", command="true", outputs=("a", "a"))
    with pytest.raises(ExecutorError, match="timeout must be a positive number"):
        CommandJob(step="s", command="true", timeout=0)


def test_output_dirs_are_the_parents_of_the_outputs() -> None:
    job = CommandJob(step="s", command="true", outputs=("a/b/c.css", "top.css", "a/x.css"))
    assert job.output_dirs() == ["a", "a/b"]


def test_result_says_why_it_failed() -> None:
    base = dict(executor="local", command="sassc a b")
    assert CommandResult(exit_code=0, **base).failure is None  # type: ignore[arg-type]
    assert CommandResult(exit_code=2, **base).failure == "command exited with code 2: sassc a b"  # type: ignore[arg-type]
    timed = CommandResult(exit_code=124, timed_out=True, duration_ms=1500, **base)  # type: ignore[arg-type]
    assert timed.failure == "command timed out after 1.5s: sassc a b"
    missing = CommandResult(exit_code=0, missing_outputs=("b",), **base)  # type: ignore[arg-type]
    assert not missing.ok
    assert missing.failure == "command did not produce b (declared outputs must be regular files): sassc a b"


def test_executor_error_is_a_sqldom_error_that_fails_the_step_not_the_configuration() -> None:
    from sqldom.errors import SqldomError
    err = ExecutorError("podman is not usable here", executor="podman", hint="install it")
    assert isinstance(err, SqldomError)
    assert (err.exit_code, err.executor, err.hint, err.headline()) == (1, "podman", "install it",
                                                                         "podman is not usable here")


def test_kept_output_is_bounded_to_its_end() -> None:
    tail = Tail(limit=10)
    for i in range(100):
        tail.add(f"{i:02d}\n".encode())
    assert tail.text() == "[... 290 bytes of output omitted ...]\n" + "".join(f"{i:02d}\n" for i in range(90, 100))[-10:]
