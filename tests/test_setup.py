"""The project's own setup: pins in step, what CI and `make` run, notebook layout."""

import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import jupytext
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LINTED = ["src", "tests", "notebooks", "benchmarks"]


def canonical(name: str) -> str:
    """A distribution name as pip compares them (``pre_commit`` == ``pre-commit``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.strip().lstrip("- ").strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            out[canonical(m[1])] = m[2]
    return out


def lock_pins() -> dict[str, str]:
    return pins((ROOT / "requirements.lock").read_text().splitlines())


def make_dry_run(*args: str) -> list[list[str]]:
    """The commands ``make -n ARGS`` would run in the repository, one token list each."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines() if line.strip()]


def lint_commands() -> list[list[str]]:
    # -o: take the installed environment as up to date, so only lint's own recipe is listed
    return make_dry_run("-o", ".venv/.installed", "lint")


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
        "voila",
        "selenium",
    ):
        assert name in lock, name
    assert lock["torch"] == "2.13.0"
    assert lock["jupyter-book"].startswith("1.")


def run_ci(tmp_path: Path, failing: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run .ci/run with a stand-in ``make`` that logs its directory and arguments and
    fails for the target ``failing``."""
    log = tmp_path / "make.log"
    stub = tmp_path / "bin" / "make"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text(f'#!/bin/sh\necho "$PWD $*" >> "{log}"\n[ "$*" != "{failing}" ]\n')
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(ROOT / ".ci" / "run")], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls


def test_ci_runs_the_readme_command(tmp_path):
    # CI runs, from the repository root, `make lint`, `make browser` (headless Chromium for
    # the app's browser test) and then `make test`
    proc, calls = run_ci(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert calls == [f"{ROOT} lint", f"{ROOT} browser", f"{ROOT} test"]
    # a machine where Chromium cannot be installed still runs the tests (that one skips)
    log = tmp_path / "make.log"
    log.unlink()
    proc, calls = run_ci(tmp_path, failing="browser")
    assert proc.returncode == 0 and calls[-1] == f"{ROOT} test"
    # ... and stops at the first failure (set -e): a lint error means no test run
    log.unlink()
    proc, calls = run_ci(tmp_path, failing="lint")
    assert proc.returncode != 0
    assert calls == [f"{ROOT} lint"]
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lint" in readme and "pre-commit install" in readme


def test_make_lint_runs_ruff_and_mypy():
    assert lint_commands() == [
        [".venv/bin/ruff", "check", *LINTED],
        [".venv/bin/ruff", "format", "--check", *LINTED],
        [".venv/bin/mypy", "src"],
    ]
    assert all((ROOT / d).is_dir() for d in LINTED)
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["files"] == ["src"] and mypy["python_version"] == "3.11"


def test_make_test_runs_pytest():
    assert make_dry_run("-o", ".venv/.installed", "test") == [[".venv/bin/python", "-m", "pytest"]]


def test_venv_is_made_from_the_lock_and_remade_when_it_changes():
    for changed in ("requirements.lock", "pyproject.toml"):
        # -W: as if the file had just been edited; lint and test then reinstall first
        for target in ("lint", "test"):
            commands = [" ".join(c) for c in make_dry_run("-W", changed, target)]
            create = next(i for i, c in enumerate(commands) if "-m venv .venv" in c)
            lock = next(
                i
                for i, c in enumerate(commands)
                if c.startswith(".venv/bin/python -m pip install")
                and c.endswith("-r requirements.lock")
            )
            editable = next(i for i, c in enumerate(commands) if c.endswith(" -e ."))
            assert create < lock < editable, commands
            assert "--no-deps" in commands[editable]  # the package adds no unpinned package


def test_lint_tools_are_pinned_and_installed():
    lock = lock_pins()
    for dist in ("ruff", "mypy", "pre-commit", "pytest"):
        assert importlib.metadata.version(dist) == lock[dist], dist
    # every range in pyproject.toml admits the pinned version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        requirements += [Requirement(r) for r in extra]
    assert {"mypy", "pre-commit", "ruff"} <= {
        canonical(Requirement(r).name) for r in project["optional-dependencies"]["dev"]
    }
    for req in requirements:
        name = canonical(req.name)
        assert name in lock, name
        assert req.specifier.contains(lock[name], prereleases=True), (str(req), lock[name])


def test_pre_commit_runs_the_lint_commands():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (repo,) = config["repos"]
    assert repo["repo"] == "local"  # offline: the venv's own pinned tools
    hooks = repo["hooks"]
    assert all(h["language"] == "system" for h in hooks)
    entries = [shlex.split(h["entry"]) + h.get("args", []) for h in hooks]
    for command, entry, hook in zip(lint_commands(), entries, hooks, strict=True):
        tool = [c for c in command if c not in LINTED]
        assert entry[: len(tool)] == tool, (tool, entry)
        for folder in [c for c in command if c in LINTED]:  # same files as `make lint`
            assert re.search(hook["files"], f"{folder}/module.py"), (hook["id"], folder)
    mypy = hooks[-1]
    assert mypy["pass_filenames"] is False and entries[-1] == [".venv/bin/mypy", "src"]
    proc = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", ".pre-commit-config.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


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


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


def test_readme_examples_match_the_package():
    import ast

    from disclatent.cli import build_parser

    readme = (ROOT / "README.md").read_text()
    commands = [
        line.split("#")[0].split("-m disclatent", 1)[1]
        for block in fenced_blocks(readme, "bash")
        for line in block.splitlines()
        if "-m disclatent" in line
    ]
    assert len(commands) >= 8
    for command in commands:  # every command line parses (an optional [--flag value] too)
        build_parser().parse_args(shlex.split(command.replace("[", "").replace("]", "")))
    snippets = fenced_blocks(readme, "python")
    assert snippets
    for snippet in snippets:  # every import of the examples resolves
        imports = [n for n in ast.parse(snippet).body if isinstance(n, ast.Import | ast.ImportFrom)]
        assert imports
        exec(compile(ast.Module(body=imports, type_ignores=[]), "README.md", "exec"), {})


def test_method_reference_has_every_section_the_code_cites():
    method = (ROOT / "book" / "method.md").read_text()
    sections = set(re.findall(r"^## (.+)$", method, re.M))
    assert {
        "Data",
        "Segmentation",
        "Geometry",
        "Autoencoder",
        "Prediction",
        "Interpretation",
        "Defects avoided",
        "Conventions",
    } <= sections
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert "book/method" in [c["file"] for part in toc["parts"] for c in part["chapters"]]
    # "(``book/method.md``, *Prediction* and *Interpretation*)": each name is a section
    cited = {}
    sources = [*(ROOT / "src").rglob("*.py"), *(ROOT / "notebooks").glob("*.py")]
    for path in sources:
        text = re.sub(r"\s*\n\s*#?\s*", " ", path.read_text())  # join wrapped lines
        for names in re.findall(r"book/method\.md``?,? ((?:\*[^*]+\*(?:,? and |, )?)+)", text):
            for name in re.findall(r"\*([^*]+)\*", names):
                cited.setdefault(name, []).append(path.name)
    assert cited, "no docstring cites book/method.md"
    unknown = {name: files for name, files in cited.items() if name not in sections}
    assert not unknown, f"sections cited but missing from book/method.md: {unknown}"
    # the published figures have one home: the method page types none of them
    from disclatent import published

    figures = {f"{v:.2f}" for v in published.PREDICTION[["f1", "auc"]].stack()}
    figures |= {str(v) for v in published.AUTOENCODER_SWEEP["iou"].dropna()}
    typed = [f for f in figures if re.search(rf"(?<![\d.]){re.escape(f)}(?!\d)", method)]
    assert not typed, typed
