"""Execute the notebooks with papermill (cached) and build the book with Jupyter Book 1.

Everything is written under one build folder (``_build`` by default)::

    _build/site/        the Sphinx source: book/ pages, _config.yml, _toc.yml and the
                        executed notebooks (notebooks/NN_name.ipynb)
    _build/html/        the rendered book (open index.html)
    _build/data/        cohorts (the phantom), _build/tables/ CSV tables, _build/models/ ...

A notebook is re-executed only when its cache key changes. The key chains the package source,
the parameters (profile, data folder and a fingerprint of its files) and the sources of this
and every earlier notebook, so a change to an early step re-runs the steps after it and
nothing before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import disclatent
from disclatent.paths import project_root, resolve_build_dir

KERNEL_NAME = "disclatent"


def package_digest() -> str:
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
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.py"))


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"


def execute_notebook(source: Path, output: Path, parameters: dict, cwd: Path) -> float:
    """Convert a jupytext source to ipynb, execute it with papermill, write it atomically."""
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
        )
        seconds = time.perf_counter() - start
        done = nbformat.read(tmp_out, as_version=4)
        done.metadata.setdefault("disclatent", {})["seconds"] = round(seconds, 1)
        for cell in done.cells:  # papermill's copy of the parameters: folded on the page
            tags = cell.metadata.get("tags", [])
            if "injected-parameters" in tags and "hide-cell" not in tags:
                cell.metadata["tags"] = [*tags, "hide-cell"]
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
    profile: str, data: str, build_dir: Path, force: bool = False, root: Path | None = None
) -> list[tuple[str, float | None]]:
    """Execute every notebook whose inputs changed; returns (name, seconds or None if cached)."""
    root = root or project_root()
    site = build_dir / "site"
    parameters = {"profile": profile, "data_dir": str(data or ""), "build_dir": str(build_dir)}
    key = hashlib.sha256(
        (
            package_digest() + json.dumps(parameters, sort_keys=True) + data_fingerprint(data)
        ).encode()
    )
    timings = []
    for source in notebook_sources(root):
        key.update(source.read_bytes())
        digest = key.hexdigest()
        output = site / "notebooks" / f"{source.stem}.ipynb"
        if not force and output.exists() and _cached_key(output) == digest:
            print(f"{source.stem}: up to date")
            timings.append((source.stem, None))
            continue
        print(f"{source.stem}: executing ({profile} profile) ...", flush=True)
        seconds = execute_notebook(source, output, parameters, cwd=root)
        _stamp_key(output, digest)
        print(f"{source.stem}: executed in {seconds:.1f} s", flush=True)
        timings.append((source.stem, seconds))
    return timings


# Offline reading: the scripts the book's pages need, served from its own _static folder.
VENDOR_PACKAGES = {
    "mathjax": "3.2.2",
    "requirejs": "2.3.7",
    "@jupyter-widgets/html-manager": "1.0.15",
}


def vendor_cache() -> Path:
    return Path(os.environ.get("DISCLATENT_CACHE", Path.home() / ".cache" / "disclatent"))


def fetch_vendor_assets(cache: Path | None = None) -> Path:
    """MathJax 3, require.js and the Jupyter widget manager, fetched once with ``npm pack``.

    Returns a folder holding ``mathjax/tex-chtml.js`` (with the fonts and extensions it
    loads), ``require.js`` and ``html-manager/embed-amd.js``. Cached per user, keyed by the
    pinned versions above; written atomically (temporary folder, then rename).
    """
    import subprocess
    import tarfile
    import tempfile

    key = hashlib.sha256(json.dumps(VENDOR_PACKAGES, sort_keys=True).encode()).hexdigest()[:12]
    dest = (cache or vendor_cache()) / f"vendor-{key}"
    if (dest / "versions.json").exists():
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is needed once to fetch MathJax and the Jupyter widget manager "
            "so the book reads offline (Debian: apt-get install npm)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        tmp = Path(tmp)
        specs = [f"{name}@{version}" for name, version in VENDOR_PACKAGES.items()]
        subprocess.run(
            [npm, "pack", "--silent", *specs], cwd=tmp, check=True, stdout=subprocess.DEVNULL
        )
        out = tmp / "vendor"
        for archive in sorted(tmp.glob("*.tgz")):
            unpacked = tmp / archive.stem
            with tarfile.open(archive) as tf:
                tf.extractall(unpacked, filter="data")
            pkg = unpacked / "package"
            if archive.name.startswith("mathjax"):
                skip = shutil.ignore_patterns(
                    "sre",
                    "mml-*",
                    "tex-svg*",
                    "tex-mml-*",
                    "tex-chtml-full*",
                    "svg",
                    "svg.js",
                    "node-main*",
                )
                shutil.copytree(pkg / "es5", out / "mathjax", ignore=skip)
            elif archive.name.startswith("requirejs"):
                out.mkdir(parents=True, exist_ok=True)
                shutil.copy2(pkg / "require.js", out / "require.js")
            else:
                skip = shutil.ignore_patterns("*.map", "embed.js", "libembed*", "index.js*")
                shutil.copytree(pkg / "dist", out / "html-manager", ignore=skip)
        (out / "versions.json").write_text(json.dumps(VENDOR_PACKAGES, indent=2) + "\n")
        if not dest.exists():
            os.replace(out, dest)
    return dest


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

    site = build_dir / "site"
    out = build_dir / "html"
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
    build_dir: Path = Path("_build"),
    html: bool = True,
    force: bool = False,
) -> None:
    root = project_root()
    build_dir = resolve_build_dir(build_dir)
    start = time.perf_counter()
    timings = execute_all(profile, data, build_dir, force=force, root=root)
    stage_pages(root, build_dir / "site")
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


def check_pages(
    html_dir: str | os.PathLike,
    screenshots: str | os.PathLike | None = None,
    chromium: str | None = None,
) -> list[dict]:
    """Check every rendered page: its images exist and decode, and count its tables.

    With ``screenshots`` (a folder) and a headless Chromium on the PATH, also renders each
    page to ``<screenshots>/<page>.png`` so a person can look at it. Returns one dict per
    page: ``page, images, broken_images, tables, figures, errors, screenshot``.
    """
    import re
    import subprocess

    from PIL import Image

    html_dir = Path(html_dir)
    skip_dirs = {"_sources", "_static", "vendor", "_images"}
    pages = sorted(
        p
        for p in html_dir.rglob("*.html")
        if not skip_dirs & set(p.relative_to(html_dir).parts[:-1])
        and p.name not in ("genindex.html", "search.html", "index.html")
    )
    browser = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    out = []
    for page in pages:
        text = page.read_text()
        srcs = re.findall(r'<img[^>]+src="([^"]+)"', text)
        broken = []
        for src in srcs:
            if src.startswith("data:"):
                continue
            path = (page.parent / src.split("?")[0]).resolve()
            try:
                with Image.open(path) as im:
                    im.verify()
            except (OSError, ValueError):
                broken.append(src)
        row = {
            "page": str(page.relative_to(html_dir)),
            "images": len(srcs),
            "broken_images": broken,
            "tables": text.count("<table"),
            "errors": len(
                re.findall(
                    r"Traceback \(most recent call last\)|"
                    r'class="output traceback',
                    text,
                )
            ),
            "screenshot": None,
        }
        if screenshots and browser:
            shot = Path(screenshots) / (row["page"].replace("/", "__")[:-5] + ".png")
            shot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    browser,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--hide-scrollbars",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1280,2400",
                    f"--user-data-dir={shot.parent / '.chromium'}",
                    f"--screenshot={shot}",
                    page.resolve().as_uri(),
                ],
                check=False,
                capture_output=True,
                timeout=120,
            )
            row["screenshot"] = str(shot) if shot.exists() else None
        out.append(row)
    return out
