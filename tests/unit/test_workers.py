"""sqldom.workers: ordered results from forked workers, and what happens when a worker dies."""

from __future__ import annotations

import os

import pytest

from sqldom import workers

pytestmark = pytest.mark.skipif(not workers.can_fork(), reason="needs fork")


def test_results_come_back_in_item_order_from_several_processes() -> None:
    parent = os.getpid()
    got = list(workers.run_ordered(lambda x: (x * x, os.getpid()), list(range(50)), 3))
    assert [v for v, _ in got] == [x * x for x in range(50)]
    pids = {pid for _, pid in got}
    assert parent not in pids and len(pids) == 3


def test_one_job_or_one_item_runs_here() -> None:
    assert [pid for pid in workers.run_ordered(lambda _: os.getpid(), [1, 2], 1)] == [os.getpid()] * 2
    assert list(workers.run_ordered(lambda _: os.getpid(), [1], 4)) == [os.getpid()]


def test_a_dying_worker_costs_only_time_the_parent_redoes_its_items() -> None:
    parent = os.getpid()

    def fn(x: int) -> tuple[int, bool]:
        if x == 7 and os.getpid() != parent:
            os._exit(3)                      # a crash in user code, say
        return x + 1, os.getpid() == parent

    got = list(workers.run_ordered(fn, list(range(20)), 2))
    assert [v for v, _ in got] == [x + 1 for x in range(20)]
    assert got[7][1] is True                 # recomputed here


def test_an_exception_in_a_worker_is_raised_here_by_the_redo() -> None:
    def fn(x: int) -> int:
        if x == 3:
            raise ValueError("bad item")
        return x

    with pytest.raises(ValueError, match="bad item"):
        list(workers.run_ordered(fn, list(range(8)), 2))


def test_before_runs_in_each_worker_and_closing_early_reaps_them() -> None:
    marks: list[int] = []
    gen = workers.run_ordered(lambda x: marks == [1], list(range(10)), 2, before=lambda: marks.append(1))
    assert next(gen) is True                 # the worker saw its own ``before``
    assert marks == []                       # the parent's list is untouched
    gen.close()


def test_workers_keep_their_inheritance_frozen_and_the_parent_does_not() -> None:
    """A collection in a worker never visits (so never copies, page by page) what it inherited."""
    import gc
    before = gc.get_freeze_count()
    inherited = [{"i": i} for i in range(5000)]
    counts = list(workers.run_ordered(lambda _: gc.get_freeze_count(), list(range(6)), 2))
    assert all(n >= len(inherited) for n in counts)
    assert gc.get_freeze_count() == before
