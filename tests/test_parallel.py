"""One task per series (disclatent.parallel): content-keyed results written once, resume,
failures reported by name, and the same results serially, on a LocalCluster and on an
existing scheduler given by address."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from disclatent import parallel as par


def checksum_task(task: par.Task, out: Path) -> None:
    """A task whose result is a function of its input bytes and parameters only."""
    data = np.frombuffer(task.inputs[0].read_bytes(), np.uint8)
    if data.size and data[0] == ord("!"):
        raise ValueError(f"{task.inputs[0].name}: corrupt")
    np.savez(out, total=np.int64(data.astype(np.int64).sum() * task.params.get("scale", 1)))


def _tasks(folder: Path, n: int = 4, scale: int = 1) -> list[par.Task]:
    folder.mkdir(exist_ok=True)
    tasks = []
    for i in range(n):
        path = folder / f"{i}_t1.mha"
        if not path.exists():
            path.write_bytes(bytes(range(i + 1, i + 40)))
        tasks.append(par.Task(f"{i}_t1", (path,), {"scale": scale}))
    return tasks


def _totals(results: par.TaskResults) -> dict[str, int]:
    return {n: int(np.load(p)["total"]) for n, p in results.files.items()}


def test_results_are_written_once_and_reused_until_an_input_changes(tmp_path):
    tasks = _tasks(tmp_path / "in")
    cache = tmp_path / "cache"
    first = par.run_tasks(checksum_task, tasks, cache, scheduler="serial", progress=False)
    expected = {f"{i}_t1": sum(range(i + 1, i + 40)) for i in range(4)}
    assert _totals(first) == expected and first.computed == list(expected)
    again = par.run_tasks(checksum_task, tasks, cache, scheduler="serial", progress=False)
    assert again.computed == [] and again.reused == list(expected)  # resumed, nothing redone
    tasks[2].inputs[0].write_bytes(bytes(range(100, 140)))  # one mask changed
    changed = par.run_tasks(checksum_task, tasks, cache, scheduler="serial", progress=False)
    assert changed.computed == ["2_t1"] and _totals(changed)["2_t1"] == sum(range(100, 140))
    # a parameter or the code's version (salt) is part of the key too
    scaled = par.run_tasks(checksum_task, _tasks(tmp_path / "in", scale=2), cache, "serial")
    assert len(scaled.computed) == 4
    salted = par.run_tasks(checksum_task, tasks, cache, salt="v2", scheduler="serial")
    assert len(salted.computed) == 4
    assert not list(cache.glob(".*tmp*"))  # nothing half-written left behind


def test_a_failing_series_is_named_and_the_others_complete(tmp_path):
    tasks = _tasks(tmp_path / "in")
    tasks[1].inputs[0].write_bytes(b"!broken")
    missing = par.Task("9_t1", (tmp_path / "in" / "9_t1.mha",))
    results = par.run_tasks(
        checksum_task, [*tasks, missing], tmp_path / "cache", scheduler="serial", progress=False
    )
    assert list(results.files) == ["0_t1", "2_t1", "3_t1"]
    by = results.failures.set_index("series")["error"]
    assert list(by.index) == ["1_t1", "9_t1"]
    assert by["1_t1"].startswith("ValueError: 1_t1.mha: corrupt")
    assert "cannot read input" in by["9_t1"] and "9_t1.mha" in by["9_t1"]
    assert not list((tmp_path / "cache").glob("*1_t1*"))  # the failure wrote nothing


def test_scheduler_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv(par.SCHEDULER_ENV, raising=False)
    assert par.resolve_scheduler() == "local"
    monkeypatch.setenv(par.SCHEDULER_ENV, "tcp://10.0.0.1:8786")
    assert par.resolve_scheduler() == "tcp://10.0.0.1:8786"
    assert par.resolve_scheduler("serial") == "serial"
    with pytest.raises(ValueError, match="unique"):
        par.run_tasks(checksum_task, [par.Task("a", ()), par.Task("a", ())], "x", "", "serial")


@pytest.mark.slow
def test_local_cluster_and_an_existing_scheduler_give_the_serial_results(tmp_path, monkeypatch):
    from distributed import LocalCluster

    tasks = _tasks(tmp_path / "in", n=5)
    tasks[3].inputs[0].write_bytes(b"!broken")
    serial = par.run_tasks(checksum_task, tasks, tmp_path / "s", scheduler="serial")
    environ = dict(os.environ)
    local = par.run_tasks(checksum_task, tasks, tmp_path / "l", scheduler="local", workers=2)
    assert local.scheduler == "local" and _totals(local) == _totals(serial)
    # the nannies' worker settings (MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS) do not stay in
    # this process's environment, where later child processes (fold autoencoders) inherit it
    assert dict(os.environ) == environ
    assert local.failures.equals(serial.failures)
    for name, path in serial.files.items():
        assert path.name == local.files[name].name  # the same content key
    with LocalCluster(
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        monkeypatch.setenv(par.SCHEDULER_ENV, cluster.scheduler_address)
        remote = par.run_tasks(checksum_task, tasks, tmp_path / "r", progress=False)
    assert remote.scheduler.startswith("tcp://127.0.0.1:")
    assert _totals(remote) == _totals(serial) and remote.failures.equals(serial.failures)
    assert os.listdir(tmp_path / "r") and not list((tmp_path / "r").glob(".*"))
