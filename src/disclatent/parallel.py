"""One independent task per series, run serially, on a local Dask cluster, or on any
existing Dask cluster, with each result written once under a key of its input's content.

:func:`run_tasks` is what the per-series steps (disc isolation and geometry, segmentation
inference) call. Each :class:`Task` names its series, the input files whose *bytes* key its
result, and any parameters that change the result; ``func(task, path)`` writes the result
to ``path``. The runner:

* skips a task whose result file already exists (``<cache_dir>/<name>-<key>.npz``), so an
  interrupted run restarted with the same command resumes from per-series results, and a
  changed mask (or parameter, or ``salt``: the code's version) is recomputed;
* writes every result to a temporary name first and renames it when complete, so nothing
  half-written is ever read back;
* catches a task's error and reports it by series name; the other tasks go on;
* runs the tasks where the *scheduler* says (``scheduler`` argument, else the environment
  variable ``DISCLATENT_SCHEDULER``, else ``local``):

  - ``serial``: in this process, one after another (tests, debugging);
  - ``local``: a ``dask.distributed.LocalCluster`` of ``workers`` processes (default: one
    per core), one thread each; Dask's nanny sets ``OMP_NUM_THREADS=1`` so torch and NumPy
    use one thread per worker;
  - any other value is the address of a running scheduler (``tcp://host:8786``): a
    dask-jobqueue SLURM cluster, Kubernetes, ... with no code change. Its workers must see
    the input files and ``cache_dir`` at the same paths (a shared file system).

Results are identical on every scheduler: each task is a pure function of its inputs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

SCHEDULER_ENV = "DISCLATENT_SCHEDULER"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Task:
    """One series' work: its ``name`` (reports, file names), the ``inputs`` whose bytes key
    its result, and JSON-ready ``params`` that also change it."""

    name: str
    inputs: tuple[Path, ...]
    params: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass
class TaskResults:
    """Result files of the tasks that succeeded (in task order) and the failures, one row
    per failed series with its error."""

    files: dict[str, Path]
    failures: pd.DataFrame
    computed: list[str]  # names computed in this run (the others were reused)
    scheduler: str

    @property
    def reused(self) -> list[str]:
        return [n for n in self.files if n not in set(self.computed)]


def content_key(task: Task, salt: str = "") -> str:
    """SHA-256 (16 hex digits) of ``salt``, the bytes of every input file and the params."""
    h = hashlib.sha256(salt.encode())
    for path in task.inputs:
        h.update(b"\0file\0")
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    h.update(json.dumps(task.params, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def code_version(*modules: str) -> str:
    """A salt for :func:`run_tasks` from the source of ``disclatent`` submodules (e.g.
    ``"discs.store"``): editing any of them recomputes the results they made."""
    h = hashlib.sha256()
    for name in modules:
        module = importlib.import_module(f"disclatent.{name}")
        h.update(name.encode() + b"\0" + Path(str(module.__file__)).read_bytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# Warnings and data errors across processes: a task records them in its result, the caller
# replays them in task order, so every scheduler reports the same
# ---------------------------------------------------------------------------------------
def qualified_name(cls: type) -> str:
    """``"module:Qualname"`` of a class (a warning category, an exception type)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(name: str, base: type, fallback: type) -> type:
    module, _, attr = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        return fallback
    return cls if isinstance(cls, type) and issubclass(cls, base) else fallback


def warning_records(caught: Sequence[warnings.WarningMessage]) -> list[list[str]]:
    """JSON-ready ``[[category, message], ...]`` of warnings caught in a task."""
    return [[qualified_name(w.category), str(w.message)] for w in caught]


def replay_warnings(records: Sequence[Sequence[str]], stacklevel: int = 3) -> None:
    """Re-emit :func:`warning_records` in this process, with their categories."""
    for category, message in records:
        warnings.warn(message, _resolve(category, Warning, UserWarning), stacklevel=stacklevel)


def error_class(name: str, base: type[Exception] = Exception) -> type[Exception]:
    """The exception class that :func:`qualified_name` named (``base`` if unknown)."""
    return _resolve(name, base, base)


def frame_arrays(frame: pd.DataFrame, prefix: str = "table") -> dict[str, Any]:
    """A table as ``np.savez`` arrays, column by column (floats bit for bit, no pickle)."""
    import numpy as np

    out: dict[str, Any] = {f"{prefix}__columns": np.array(json.dumps(list(frame.columns)))}
    for i, col in enumerate(frame.columns):
        values = frame[col].to_numpy()
        out[f"{prefix}__{i}"] = values.astype(str) if values.dtype == object else values
    return out


def frame_from_arrays(z: Any, prefix: str = "table") -> pd.DataFrame:
    """Inverse of :func:`frame_arrays` on an opened ``.npz``."""
    columns = json.loads(str(z[f"{prefix}__columns"]))
    return pd.DataFrame({c: z[f"{prefix}__{i}"] for i, c in enumerate(columns)}, columns=columns)


def file_stamp(path: str | os.PathLike) -> tuple[int, int]:
    """``(mtime_ns, size)`` of a file, ``(0, 0)`` if it is missing (its loader then names
    it): a cheap version key for a per-process model cache (``functools.lru_cache`` keyed on
    it reloads a model whose weights file changed)."""
    path = Path(path)
    if not path.exists():
        return 0, 0
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def in_dask_worker() -> bool:
    """Whether this code runs inside a ``dask.distributed`` worker."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def result_path(cache_dir: Path, task: Task, key: str) -> Path:
    return cache_dir / f"{task.name}-{key}.npz"


def resolve_scheduler(scheduler: str | None = None) -> str:
    """``scheduler``, else ``$DISCLATENT_SCHEDULER``, else ``local``."""
    value = scheduler or os.environ.get(SCHEDULER_ENV, "").strip() or "local"
    return value


def _run_one(func: Callable[[Task, Path], None], task: Task, target: Path) -> str | None:
    """Run ``func`` into a temporary file beside ``target`` and rename it; ``None`` on
    success, else the error message (the task's failure never escapes to the others)."""
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.npz")
    try:
        func(task, tmp)
        if not tmp.exists():
            return f"{task.name}: the task wrote no result"
        os.replace(tmp, target)
        return None
    except Exception as exc:  # noqa: BLE001 - reported by name, the cohort goes on
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
        return f"{type(exc).__name__}: {exc}{where}"
    finally:
        tmp.unlink(missing_ok=True)


def run_tasks(
    func: Callable[[Task, Path], None],
    tasks: Sequence[Task],
    cache_dir: str | os.PathLike,
    salt: str = "",
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "series",
) -> TaskResults:
    """Run ``func`` for every task not already done; see the module docstring.

    ``func(task, path)`` must write the task's result to ``path`` (an ``.npz`` name) and be
    importable by the workers (a module-level function). ``salt`` names the code's version:
    a new salt recomputes everything.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError("task names must be unique")
    targets, failures = {}, []
    for task in tasks:
        try:
            targets[task.name] = result_path(cache, task, content_key(task, salt))
        except OSError as exc:
            failures.append({"series": task.name, "error": f"cannot read input: {exc}"})
    todo = [t for t in tasks if t.name in targets and not targets[t.name].exists()]
    mode = resolve_scheduler(scheduler)
    # one task (or none) to run: no cluster to start for it
    run_mode = "serial" if mode == "local" and len(todo) < 2 else mode
    errors = _dispatch(func, todo, targets, run_mode, workers, progress, desc) if todo else {}
    failures += [{"series": n, "error": e} for n, e in errors.items() if e is not None]
    failed = {f["series"] for f in failures}
    files = {n: targets[n] for n in names if n in targets and n not in failed}
    order = {n: i for i, n in enumerate(names)}
    table = pd.DataFrame(failures, columns=["series", "error"])
    table = table.sort_values("series", key=lambda s: s.map(order)).reset_index(drop=True)
    computed = [t.name for t in todo if t.name in files]
    return TaskResults(files=files, failures=table, computed=computed, scheduler=mode)


def _bar(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="series", disable=not enabled or total < 2)


def _dispatch(
    func: Callable[[Task, Path], None],
    todo: Sequence[Task],
    targets: dict[str, Path],
    mode: str,
    workers: int | None,
    progress: bool,
    desc: str,
) -> dict[str, str | None]:
    errors: dict[str, str | None] = {}
    with _bar(len(todo), progress, desc) as bar:
        if mode == "serial":
            for task in todo:
                errors[task.name] = _run_one(func, task, targets[task.name])
                bar.update(1)
            return errors
        from distributed import as_completed

        with _client(mode, workers) as client:
            futures = {
                client.submit(
                    _run_one, func, t, targets[t.name], key=f"{t.name}-{i}", pure=False
                ): t
                for i, t in enumerate(todo)
            }
            for future in as_completed(futures):
                task = futures[future]
                try:
                    errors[task.name] = future.result()
                except Exception as exc:  # noqa: BLE001 - a lost worker: name the series
                    errors[task.name] = f"{type(exc).__name__}: {exc} (worker failed)"
                bar.update(1)
    return errors


class _client:
    """A ``distributed.Client`` on a new LocalCluster (``local``) or an existing scheduler;
    closes what it started, and gives this process its environment back.

    A LocalCluster's nannies run in this process and set Dask's worker environment in
    ``os.environ`` (``MALLOC_TRIM_THRESHOLD_=65536``, ``OMP_NUM_THREADS=1``, ...), where
    every process started later inherits it. With that malloc setting, 8 epochs of a fold
    autoencoder trained in a child process took 128 s (50 s of them in the OS kernel, page
    faults) instead of 82 s (7 s), measured on this project's 2-core machine."""

    def __init__(self, mode: str, workers: int | None) -> None:
        self.mode, self.workers = mode, workers
        self.cluster: Any = None
        self.client: Any = None
        self.environ: dict[str, str] = {}

    def __enter__(self) -> Any:
        from distributed import Client, LocalCluster

        self.environ = dict(os.environ)

        if self.mode == "local":
            n = self.workers or os.cpu_count() or 1
            self.cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
            self.client = Client(self.cluster)
        else:
            self.client = Client(self.mode)
        return self.client

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.environ:
            os.environ.clear()
            os.environ.update(self.environ)


def round_threads(n_jobs: int, workers: int, cores: int) -> list[int]:
    """Torch threads of each of ``n_jobs`` equal jobs run in rounds of ``workers`` at once on
    ``cores``: the cores shared out within each round, at least one each. Two one-thread
    fold autoencoders side by side took 205 s each here, one alone with both cores 133 s,
    so a last round of one (5 folds on 2 workers) gets both cores instead of idling one."""
    workers = max(1, workers)
    out = []
    for start in range(0, n_jobs, workers):
        size = min(workers, n_jobs - start)
        out += [max(1, cores // size)] * size
    return out
