"""Execute the notebooks with papermill (cached) and build the book with Jupyter Book 1.

Everything is written under one build folder (``_build`` by default)::

    _build/site/        the Sphinx source: book/ pages, _config.yml, _toc.yml and the
                        executed notebooks (notebooks/NN_name.ipynb)
    _build/html/        the rendered book (open index.html)
    _build/data/        cohorts (the phantom), _build/tables/ CSV tables, _build/models/ ...

A notebook is re-executed only when its cache key changes. The key chains the package source,
the parameters (profile, data folder and a fingerprint of its files) and the sources of this
and every earlier notebook, so a change to an early step re-runs the steps after it and
nothing before it. Paths come from :class:`disclatent.paths.BuildPaths`; the scripts the
pages need offline from :mod:`disclatent.report.vendor`; checks of the rendered pages are in
:mod:`disclatent.report.pages`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd

import disclatent
from disclatent.discs.audit import format_problems
from disclatent.paths import (
    DEFAULT_BUILD_DIR,
    BuildPaths,
    Table,
    project_root,
    resolve_build_dir,
)
from disclatent.profiles import get_profile
from disclatent.report.vendor import fetch_vendor_assets

KERNEL_NAME = "disclatent"


def package_digest() -> str:
    """Digest of every source file of the package (a change re-executes every notebook)."""
    h = hashlib.sha256()
    pkg = Path(disclatent.__file__).parent
    for path in sorted(pkg.rglob("*.py")):
        h.update(path.relative_to(pkg).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def data_fingerprint(data: str | os.PathLike) -> str:
    """Cheap identity of a data folder: every file's relative path, size and mtime."""
    if not data:
        return ""
    root = Path(data).expanduser()
    h = hashlib.sha256(str(root.resolve()).encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def notebook_sources(root: Path) -> list[Path]:
    """The chapters' jupytext sources ``notebooks/NN_name.py``, in order."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.py"))


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"


#: tags a chapter's author may set on a cell to choose its display; left as they are
DISPLAY_TAGS = {
    "hide-input",
    "hide-output",
    "hide-cell",
    "remove-input",
    "remove-output",
    "remove-cell",
}


def fold_code(nb) -> None:
    """Fold the code on the rendered page so that it reads as a paper: every code cell's input
    behind a "Show code" toggle (``hide-input``), papermill's copy of the parameters folded
    whole (``hide-cell``); the ``parameters`` cell, which says what the run used, stays open,
    and a cell whose author chose a display tag keeps it."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        if "injected-parameters" in tags and "hide-cell" not in tags:
            cell.metadata["tags"] = [*tags, "hide-cell"]
        elif not ({"parameters", "injected-parameters"} | DISPLAY_TAGS) & set(tags):
            cell.metadata["tags"] = [*tags, "hide-input"]


def execute_notebook(
    source: Path,
    output: Path,
    parameters: dict,
    cwd: Path,
    cell_timeout: float | None = None,
    attempts: int = 2,
) -> float:
    """Convert a jupytext source to ipynb, execute it with papermill, write it atomically.

    With ``cell_timeout`` (seconds) a cell that runs longer stops the execution, which is then
    started again, up to ``attempts`` times in all; the last timeout is raised.
    """
    from nbclient.exceptions import CellTimeoutError

    for _ in range(attempts - 1):
        try:
            return _execute_once(source, output, parameters, cwd, cell_timeout)
        except CellTimeoutError:
            print(f"{source.stem}: a cell ran over {cell_timeout} s; executing again", flush=True)
    return _execute_once(source, output, parameters, cwd, cell_timeout)


def _execute_once(
    source: Path, output: Path, parameters: dict, cwd: Path, cell_timeout: float | None
) -> float:
    import jupytext
    import nbformat
    import papermill as pm

    nb = jupytext.read(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp_in = output.with_name(f".{output.stem}.in.ipynb")
    tmp_out = output.with_name(f".{output.stem}.out.ipynb")
    nbformat.write(nb, tmp_in)
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(tmp_in),
            str(tmp_out),
            parameters=parameters,
            kernel_name=_kernel_name(),
            cwd=str(cwd),
            progress_bar=False,
            log_output=False,
            execution_timeout=cell_timeout,
        )
        seconds = time.perf_counter() - start
        done = nbformat.read(tmp_out, as_version=4)
        done.metadata.setdefault("disclatent", {})["seconds"] = round(seconds, 1)
        fold_code(done)
        nbformat.write(done, tmp_out)
        os.replace(tmp_out, output)
    finally:
        tmp_in.unlink(missing_ok=True)
        tmp_out.unlink(missing_ok=True)
    return seconds


def _cached_key(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["metadata"]["disclatent"]["cache_key"]
    except (OSError, ValueError, KeyError):
        return None


def _stamp_key(path: Path, key: str) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.setdefault("disclatent", {})["cache_key"] = key
    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, path)


def execute_all(
    profile: str,
    data: str,
    build_dir: Path,
    force: bool = False,
    root: Path | None = None,
    minutes: float | None = None,
) -> list[tuple[str, float | None]]:
    """Execute every notebook whose inputs changed; returns (name, seconds or None if cached).
    With ``minutes``, no notebook is started once that much time is spent (the next call
    continues from the first one not executed)."""
    start = time.perf_counter()
    root = root or project_root()
    paths = BuildPaths(build_dir, profile)
    parameters = {"profile": profile, "data_dir": str(data or ""), "build_dir": str(build_dir)}
    key = hashlib.sha256(
        (
            package_digest() + json.dumps(parameters, sort_keys=True) + data_fingerprint(data)
        ).encode()
    )
    timings: list[tuple[str, float | None]] = []
    for source in notebook_sources(root):
        key.update(source.read_bytes())
        digest = key.hexdigest()
        output = paths.notebooks / f"{source.stem}.ipynb"
        if not force and output.exists() and _cached_key(output) == digest:
            print(f"{source.stem}: up to date")
            timings.append((source.stem, None))
            continue
        if minutes is not None and time.perf_counter() - start > 60 * minutes:
            print(f"{source.stem}: not started (the {minutes:g} minutes are spent)", flush=True)
            break
        print(f"{source.stem}: executing ({profile} profile) ...", flush=True)
        timeout = get_profile(profile).cell_timeout_s
        seconds = execute_notebook(source, output, parameters, cwd=root, cell_timeout=timeout)
        _stamp_key(output, digest)
        print(f"{source.stem}: executed in {seconds:.1f} s", flush=True)
        timings.append((source.stem, seconds))
    return timings


def stage_pages(root: Path, site: Path) -> None:
    """Copy the book's own pages and configuration into the Sphinx source folder."""
    site.mkdir(parents=True, exist_ok=True)
    shutil.copytree(root / "book", site / "book", dirs_exist_ok=True)
    # html_extra_path, not _static: Jupyter Book would inject every .js under _static
    shutil.copytree(fetch_vendor_assets(), site / "_extra" / "vendor", dirs_exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        src, dst = root / name, site / name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            shutil.copy2(src, dst)


def build_html(build_dir: Path) -> Path:
    """Run Jupyter Book (Sphinx, warnings are errors) on ``build_dir/site``."""
    from jupyter_book.sphinx import build_sphinx

    paths = BuildPaths(build_dir)
    site, out = paths.site, paths.html
    status = build_sphinx(
        site,
        out,
        use_external_toc=True,
        noconfig=True,
        path_config=str(site / "_config.yml"),
        confoverrides={"external_toc_path": str(site / "_toc.yml"), "latex_individualpages": False},
        builder="html",
        warningiserror=True,
        keep_going=True,
        doctreedir=build_dir / ".doctrees",
        verbosity=0,
        quiet=True,
    )
    if status:
        raise RuntimeError(f"Jupyter Book build failed (status {status}); see the warnings above")
    return out / "index.html"


def build_book(
    profile: str = "default",
    data: str = "",
    build_dir: Path = Path(DEFAULT_BUILD_DIR),
    html: bool = True,
    force: bool = False,
) -> None:
    """Execute the notebooks that changed, stage the pages and (``html``) render the book."""
    root = project_root()
    build_dir = resolve_build_dir(build_dir)
    start = time.perf_counter()
    try:
        timings = execute_all(profile, data, build_dir, force=force, root=root)
        stage_pages(root, BuildPaths(build_dir, profile).site)
        if html:
            t = time.perf_counter()
            index = build_html(build_dir)
            timings.append(("html", time.perf_counter() - t))
            print(f"book: {index}")
        print(
            "timings (s): "
            + ", ".join(f"{n} {'cached' if s is None else f'{s:.1f}'}" for n, s in timings)
            + f"; total {time.perf_counter() - start:.1f}"
        )
    finally:  # the data chapter's report of bad series, also when a later chapter failed
        print_data_problems(build_dir)


def print_data_problems(build_dir: Path) -> None:
    """Print the data chapter's table of series with problems (if it has been written)."""
    path = BuildPaths(build_dir).table(Table.DATA_PROBLEMS)
    if path.exists():
        problems = pd.read_csv(path, dtype=str, keep_default_na=False)
        print(format_problems(problems), flush=True)
