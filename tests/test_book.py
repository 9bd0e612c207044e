"""The whole book, built end to end with the quick profile (the notebooks as a reader runs them)."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import build_quick_book
from disclatent.report import book

ROOT = Path(__file__).resolve().parents[1]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [c["file"] for c in part["chapters"]]
    return files


EXTERNAL = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="((?:https?:)?//[^"]+)"')


def assert_offline(html: Path) -> None:
    """No page loads a script, stylesheet, image or frame from the network."""
    pages = list(html.rglob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text()
        assert not EXTERNAL.findall(text), (page.name, EXTERNAL.findall(text)[:3])
        if "tex-chtml.js" in text:
            assert "vendor/mathjax/tex-chtml.js" in text
        if "embed-amd.js" in text:
            assert "vendor/html-manager/embed-amd.js" in text
    for asset in (
        "vendor/mathjax/tex-chtml.js",
        "vendor/require.js",
        "vendor/html-manager/embed-amd.js",
    ):
        assert (html / asset).stat().st_size > 10_000, asset


def test_offline_check_catches_a_cdn_script(tmp_path):
    (tmp_path / "p.html").write_text('<script src="https://cdn.example.org/x.js"></script>')
    with pytest.raises(AssertionError):
        assert_offline(tmp_path)


def test_check_pages_finds_broken_images_and_tracebacks(tmp_path):
    from PIL import Image

    from disclatent.report.pages import book_pages, check_pages

    html = tmp_path / "html"
    (html / "notebooks").mkdir(parents=True)
    (html / "_static").mkdir()
    Image.new("RGB", (4, 4)).save(html / "notebooks" / "ok.png")
    (html / "notebooks" / "bad.png").write_bytes(b"not a png")
    (html / "notebooks" / "a.html").write_text(
        '<img src="ok.png"><img src="bad.png?v=1"><img src="gone.png">'
        '<img src="data:image/png;base64,xx"><table></table><table>'
        '<div class="output traceback">Traceback (most recent call last)</div>'
    )
    (html / "b.html").write_text("<p>fine</p>")
    for skipped in ("index.html", "search.html", "_static/x.html"):
        (html / skipped).write_text("<img src='nothing.png'>")
    assert [p.name for p in book_pages(html)] == ["b.html", "a.html"]
    rows = {r["page"]: r for r in check_pages(html, chromium="")}
    a = rows["notebooks/a.html"]
    assert (a["images"], a["broken_images"]) == (4, ["bad.png?v=1", "gone.png"])
    assert (a["tables"], a["errors"], a["screenshot"]) == (2, 2, None)
    assert rows["b.html"] == {
        "page": "b.html",
        "images": 0,
        "broken_images": [],
        "tables": 0,
        "errors": 0,
        "screenshot": None,
    }


def test_vendor_unpacks_only_what_the_pages_load(tmp_path):
    import io
    import tarfile

    from disclatent.report.vendor import _unpack

    def pack(name: str, files: dict[str, str]) -> Path:
        archive = tmp_path / f"{name}.tgz"
        with tarfile.open(archive, "w:gz") as tf:
            for path, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(f"package/{path}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        return archive

    out = tmp_path / "vendor"
    _unpack(pack("mathjax-3.2.2", {"es5/tex-chtml.js": "m", "es5/sre/x.js": "s"}), out)
    _unpack(pack("requirejs-2.3.7", {"require.js": "r", "bin/r.js": "b"}), out)
    _unpack(
        pack(
            "jupyter-widgets-html-manager-1.0.15", {"dist/embed-amd.js": "e", "dist/a.js.map": ""}
        ),
        out,
    )
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["html-manager/embed-amd.js", "mathjax/tex-chtml.js", "require.js"]


@pytest.mark.slow
def test_quick_book_builds_and_caches(quick_book):
    build_dir, first = quick_book
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    html = build_dir / "html"
    for page in toc_files():
        assert (html / f"{page}.html").exists(), page
    data_page = (html / "notebooks" / "00_data.html").read_text()
    assert data_page.count("<table") >= 4  # cohort, prevalence, acquisition, truth tables
    images = re.findall(r'<img[^>]+src="([^"]+)"', data_page)
    assert len(images) >= 2
    for src in images:
        assert (html / "notebooks" / src).resolve().exists(), src
    assert "Traceback" not in data_page and "Error" not in data_page
    assert_offline(html)
    from disclatent.report.pages import check_pages

    checked = {r["page"]: r for r in check_pages(html)}
    assert set(checked) >= {f"{p}.html" for p in toc_files()}
    for page, r in checked.items():
        assert not r["broken_images"] and not r["errors"], (page, r)
    for page in toc_files():
        if page.startswith("notebooks/") and not page.endswith("_results"):  # text + tables
            assert checked[f"{page}.html"]["images"] >= 1, page
    tables = {p.name for p in (build_dir / "tables").glob("*.csv")}
    assert {"cohort_by_site.csv", "prevalence_by_level.csv"} <= tables
    _check_issue13_tables(build_dir / "tables")
    _check_composition_tables(build_dir / "tables")
    results_page = (html / "notebooks" / "08_results.html").read_text()
    start = results_page.index("Stability")
    glued = results_page[start : results_page.index("Where and why", start)]
    assert "Plausibility" in glued and "n/a" not in glued  # every number was read back
    assert "canonical correlation" in glued and "of 3 seeds" in glued
    import nbformat

    for name in ("02_geometry", "05_interpretation"):  # the widgets' first rendering is kept
        nb = nbformat.read(build_dir / "site" / "notebooks" / f"{name}.ipynb", as_version=4)
        state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        shown = [
            o
            for m in state.values()
            if m["model_name"] == "OutputModel"
            for o in m["state"]["outputs"]
        ]
        assert any("image/png" in o.get("data", {}) for o in shown), name
        page = (html / "notebooks" / f"{name}.html").read_text()
        assert "application/vnd.jupyter.widget-state+json" in page and "embed-amd.js" in page
    # nothing changed: every notebook is reused
    second = build_quick_book(build_dir)
    assert second.returncode == 0, second.stderr[-3000:]
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    for name in notebooks:
        assert f"{name}: up to date" in second.stdout
    assert "executing" not in second.stdout


def _check_issue13_tables(tables) -> None:
    """The baseline, stability, canonical-correlation and plausibility tables of a build:
    their columns and values in range."""
    import pandas as pd

    base = pd.read_csv(tables / "prediction_baselines.csv")
    cols = ["source", "target", "features", "auc", "auc_lo", "auc_hi", "f1", "f1_lo", "f1_hi"]
    assert set(cols) <= set(base.columns)
    assert {"level", "height + level", "latent"} <= set(base.features)
    stab = pd.read_csv(tables / "latent_stability.csv")
    assert list(stab.columns[:4]) == ["seed_a", "seed_b", "cka", "procrustes_r2"]
    n = len(set(stab.seed_a) | set(stab.seed_b))
    assert n >= 3 and len(stab) == n * (n - 1) // 2  # the quick profile: 3 seeds
    assert stab[["cka", "procrustes_r2"]].stack().between(0, 1).all()
    cca = pd.read_csv(tables / "latent_geometry_cca.csv")
    assert cca.canonical_r.between(0, 1).all() and cca.seed.nunique() == n
    plaus = pd.read_csv(tables / "latent_plausibility.csv")
    assert {"model", "sample", "plausible_share", "heldout_iou"} <= set(plaus.columns)
    assert set(plaus["kind"]) == {"plain", "latent noise"}
    assert plaus.plausible_share.between(0, 1).all()


def _check_composition_tables(tables, truth: bool = True) -> None:
    """The composition chapter's tables: Pfirrmann grade among the targets with values in
    range, the intensity model's held-out error, and the truth recovery only on the phantom."""
    import pandas as pd

    pred = pd.read_csv(tables / "intensity_prediction.csv")
    assert {"target", "features", "metric", "value", "lo", "hi"} <= set(pred.columns)
    assert "pfirrmann" in set(pred.target)
    kappa = pred[(pred.target == "pfirrmann") & (pred.metric == "qwk")]
    assert {"hand-crafted", "shape latent", "intensity latent"} <= set(kappa.features)
    assert kappa.value.between(-1, 1).all()
    assert ("best reader" in set(kappa.features)) == truth
    model = pd.read_csv(tables / "intensity_autoencoder.csv")
    assert model.heldout_intensity_mae.between(0, 2).all() and model.heldout_iou.between(0, 1).all()
    assert (tables / "composition_truth_recovery.csv").exists() == truth


#: the series broken in the book's real-data folder, and how the data report names them
BROKEN = [
    ("3_t2", "image missing"),
    ("4_t1", "mask unreadable"),
    ("6_t2", "no discs"),
    ("8_t1", "grid mismatch"),
]


def _break_series(data: Path) -> None:
    """One series broken in each way a large cohort breaks (see :data:`BROKEN`)."""
    import dataclasses

    import numpy as np

    from disclatent.data.spider import SpiderFolder
    from disclatent.data.volume import read_image, read_mask, write_image

    folder = SpiderFolder(data)
    folder.image_path("3_t2").unlink()
    raw = folder.mask_path("4_t1").read_bytes()
    folder.mask_path("4_t1").write_bytes(raw[: len(raw) // 2])  # truncated, mid-cohort
    mask = read_mask(folder.mask_path("6_t2"))
    write_image(mask.with_array(np.where(mask.array > 200, 0, mask.array)), mask.path)
    image = read_image(folder.image_path("8_t1"))
    write_image(dataclasses.replace(image, origin=(5.0, 0.0, 0.0)), image.path)


@pytest.mark.slow
def test_book_runs_on_a_spider_folder_given_as_data(tmp_path):
    """`make book DATA=...`: a phantom written to another folder stands in for real SPIDER,
    with what the real dataset lacks taken away (the generating truth, the institution
    column of overview.csv) and four series broken: each is named in the data chapter's
    table and in the report `make book` prints at the end, and the rest of the cohort
    goes through every chapter."""
    import pandas as pd

    from disclatent.data.phantom import write_phantom

    data = tmp_path / "SPIDER"
    write_phantom(data, n_patients=10, seed=5)
    (data / "phantom_truth.csv").unlink()
    overview = pd.read_csv(data / "overview.csv", dtype=str, keep_default_na=False)
    overview.drop(columns="institution").to_csv(data / "overview.csv", index=False)
    _break_series(data)
    build_dir = tmp_path / "build"
    run = subprocess.run(
        ["make", "book", "PROFILE=quick", f"DATA={data}", f"BUILD={build_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    html = build_dir / "html"
    for page in toc_files():
        assert (html / f"{page}.html").exists(), page
    assert not (build_dir / "data" / "phantom-quick").exists()  # nothing read but DATA
    tables = build_dir / "tables"
    cohort = pd.read_csv(tables / "cohort_by_site.csv", index_col=0)
    assert cohort.index.name == "Manufacturer" and cohort.loc["all", "patients"] == 10
    split = pd.read_csv(tables / "segmentation_split.csv")
    assert set(split["site_source"]) == {"manufacturer + field strength"}
    assert split["patient"].nunique() == 10
    # no truth on real data: the truth tables are not made, and the pages say why
    assert not (tables / "geometry_errors_vs_truth.csv").exists()
    assert not (tables / "latent_truth_correlation.csv").exists()
    _check_composition_tables(tables, truth=False)
    assert (
        "Real data: there is no generating truth"
        in (html / "notebooks" / "02_geometry.html").read_text()
    )
    # the broken series: named once, with their files, at the end of the run
    problems = pd.read_csv(tables / "data_problems.csv", dtype=str, keep_default_na=False)
    assert sorted(zip(problems["series"], problems["problem"], strict=True)) == BROKEN
    report = run.stdout[run.stdout.index("data: 4 series with problems") :]
    for series, problem in BROKEN:
        assert f"  {series}: {problem} (" in report
    assert str(data / "masks" / "4_t1.mha") in report
    # what cannot be read is left out; the rest of the cohort is measured and studied
    geometry = pd.read_csv(tables / "geometry_features.csv", dtype={"series": str})
    measured = set(geometry["series"])
    assert "4_t1" not in measured and "6_t2" not in measured
    assert len(measured) == 2 * 10 - 2
    assert set(split["series"]) - measured <= {"4_t1"}  # the split names it; training skips it


def test_code_is_folded_except_the_parameters():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# prose"),
        nbformat.v4.new_code_cell("profile = 'quick'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("profile = 'x'", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("y = 2", metadata={"tags": ["remove-input"]}),
    ]
    book.fold_code(nb)
    tags = [c.metadata.get("tags") for c in nb.cells]
    assert tags == [
        None,
        ["parameters"],
        ["injected-parameters", "hide-cell"],
        ["hide-input"],
        ["remove-input"],
    ]
    book.fold_code(nb)  # idempotent
    assert [c.metadata.get("tags") for c in nb.cells] == tags


def test_a_cell_over_the_timeout_executes_the_notebook_again(tmp_path):
    """A hung cell (here: one that sleeps on its first run only) stops the execution after
    the cell timeout and the notebook is executed once more; with one attempt the timeout is
    raised, never waited out."""
    from nbclient.exceptions import CellTimeoutError

    from disclatent.report.book import execute_notebook

    source = tmp_path / "hang.py"
    source.write_text(
        "# ---\n# jupyter:\n#   kernelspec:\n#     display_name: Python (disclatent)\n"
        "#     language: python\n#     name: disclatent\n# ---\n\n"
        '# %% tags=["parameters"]\nmarker = ""\n\n'
        "# %%\nimport time\nfrom pathlib import Path\n\n"
        "first = not Path(marker).exists()\nPath(marker).touch()\n"
        "if first:\n    time.sleep(120)\n"
    )
    out = tmp_path / "out" / "hang.ipynb"
    marker = tmp_path / "ran-once"
    seconds = execute_notebook(source, out, {"marker": str(marker)}, tmp_path, cell_timeout=5)
    assert out.exists() and marker.exists() and seconds < 60
    marker.unlink()
    out.unlink()
    with pytest.raises(CellTimeoutError):
        execute_notebook(source, out, {"marker": str(marker)}, tmp_path, cell_timeout=5, attempts=1)
    assert not out.exists()  # nothing half-written
