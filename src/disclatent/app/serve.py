"""Serve the explorers with Voila on 127.0.0.1 (``make explore``,
``python -m disclatent explore``).

:func:`check_inputs` says, before anything starts, which ``make book`` to run when an output
the explorers read is missing; :func:`write_app_notebook` writes the one-cell notebook that
Voila runs (``<build>/app/explore-<profile>.ipynb``; no code is shown, only the widgets);
:func:`voila_command` is the command line; :func:`serve` runs it until interrupted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from disclatent.analysis.study import LATENT_DIM
from disclatent.data.volume import write_text_atomic
from disclatent.paths import DEFAULT_BUILD_DIR, BuildPaths, MissingOutputError, Table

DEFAULT_PORT = 8866


def check_inputs(profile: str, build_dir: str | os.PathLike = DEFAULT_BUILD_DIR) -> BuildPaths:
    """The build's paths, once every output the explorers read is there; else
    :class:`MissingOutputError` with the ``make book`` command that writes it."""
    paths = BuildPaths.resolve(build_dir, profile)
    needed = {
        paths.disc_store("gt"): "02_geometry",
        paths.table(Table.GEOMETRY): "02_geometry",
        paths.autoencoder(LATENT_DIM): "03_autoencoder",
        paths.prediction_features: "04_prediction",
    }
    missing = [f"{p} (chapter {ch})" for p, ch in needed.items() if not Path(p).exists()]
    if missing:
        raise MissingOutputError(
            "The explorers read the outputs of the last `make book`; missing: "
            + "; ".join(missing)
            + f". Run `{paths.make_book_command()}` first."
        )
    return paths


def write_app_notebook(paths: BuildPaths, data_dir: str | os.PathLike = "") -> Path:
    """The notebook Voila serves: one cell that builds the explorers of this build."""
    args = ", ".join(
        f"{k}={json.dumps(str(v))}"
        for k, v in (("profile", paths.profile), ("build_dir", paths.root), ("data_dir", data_dir))
    )
    code = (
        "from disclatent.app.explore import build_app, load_inputs\n\n"
        f"build_app(load_inputs({args}))"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = paths.root / "app" / f"explore-{paths.profile}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(nbformat.writes(nb), path)
    return path


def voila_command(notebook: Path, port: int = DEFAULT_PORT) -> list[str]:
    """Voila on 127.0.0.1:``port`` serving ``notebook`` at ``/``, sources stripped."""
    return [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        "--strip_sources=True",
        "--show_tracebacks=True",
    ]


def serve(
    profile: str = "default",
    build_dir: str | os.PathLike = DEFAULT_BUILD_DIR,
    data_dir: str | os.PathLike = "",
    port: int = DEFAULT_PORT,
) -> int:
    """Check the inputs, write the notebook and run Voila until interrupted."""
    paths = check_inputs(profile, build_dir)
    notebook = write_app_notebook(paths, data_dir)
    print(f"serving the explorers of {paths.root} ({profile}) at http://127.0.0.1:{port}/")
    try:
        return subprocess.call(voila_command(notebook, port))
    except KeyboardInterrupt:
        return 0
