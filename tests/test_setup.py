"""The project's own setup: pins in step, CI calling the README's command, notebook layout."""

import re
from pathlib import Path

import jupytext
import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.strip().lstrip("- ").strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            out[m[1].lower()] = m[2]
    return out


def test_environment_yml_pins_the_same_versions():
    lock = pins((ROOT / "requirements.lock").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pins(pip_section) == lock
    assert "python=3.11" in env["dependencies"]
    for name in (
        "torch",
        "monai",
        "jupyter-book",
        "xgboost",
        "simpleitk",
        "nibabel",
        "papermill",
        "jupytext",
        "statsmodels",
        "ipywidgets",
        "scikit-learn",
    ):
        assert name in lock, name
    assert lock["torch"] == "2.13.0"
    assert lock["jupyter-book"].startswith("1.")


def test_ci_runs_the_readme_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make test" in (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "requirements.lock" in makefile and "-m venv" in makefile


def test_notebooks_have_parameters_and_kernelspec():
    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert sources
    for src in sources:
        nb = jupytext.read(src)
        assert nb.metadata["kernelspec"]["name"] == "disclatent", src.name
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, src.name
        for name in ("profile", "data_dir", "build_dir"):
            assert re.search(rf"^{name}\s*=", tagged[0].source, re.M), (src.name, name)
        # the parameters come before any code that uses them
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert first_code is tagged[0], src.name


def test_data_fingerprint_follows_the_files(tmp_path):
    from disclatent.report.book import data_fingerprint

    assert data_fingerprint("") == ""
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "1_t1.mha").write_bytes(b"a")
    first = data_fingerprint(tmp_path)
    assert data_fingerprint(tmp_path) == first
    (tmp_path / "masks" / "2_t1.mha").write_bytes(b"b")
    assert data_fingerprint(tmp_path) != first
