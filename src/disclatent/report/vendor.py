"""Offline reading: the scripts the book's pages need, served from the book itself.

MathJax 3, require.js and the Jupyter widget manager are fetched once with ``npm pack`` at
pinned versions, cached per user, and copied into every build (``html_extra_path``), so
no page loads a script from the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

VENDOR_PACKAGES = {
    "mathjax": "3.2.2",
    "requirejs": "2.3.7",
    "@jupyter-widgets/html-manager": "1.0.15",
}
#: what of MathJax's ``es5`` folder the pages do not load
_MATHJAX_SKIP = (
    "sre",
    "mml-*",
    "tex-svg*",
    "tex-mml-*",
    "tex-chtml-full*",
    "svg",
    "svg.js",
    "node-main*",
)
_WIDGETS_SKIP = ("*.map", "embed.js", "libembed*", "index.js*")


def vendor_cache() -> Path:
    """The per-user cache (``$DISCLATENT_CACHE``, else ``~/.cache/disclatent``)."""
    return Path(os.environ.get("DISCLATENT_CACHE", Path.home() / ".cache" / "disclatent"))


def _unpack(archive: Path, out: Path) -> None:
    """Copy what the pages need of one ``npm pack`` archive into ``out``."""
    import tarfile

    unpacked = archive.with_suffix("")
    with tarfile.open(archive) as tf:
        tf.extractall(unpacked, filter="data")
    pkg = unpacked / "package"
    if archive.name.startswith("mathjax"):
        ignore = shutil.ignore_patterns(*_MATHJAX_SKIP)
        shutil.copytree(pkg / "es5", out / "mathjax", ignore=ignore)
    elif archive.name.startswith("requirejs"):
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(pkg / "require.js", out / "require.js")
    else:
        ignore = shutil.ignore_patterns(*_WIDGETS_SKIP)
        shutil.copytree(pkg / "dist", out / "html-manager", ignore=ignore)


def fetch_vendor_assets(cache: Path | None = None) -> Path:
    """MathJax 3, require.js and the Jupyter widget manager, fetched once with ``npm pack``.

    Returns a folder holding ``mathjax/tex-chtml.js`` (with the fonts and extensions it
    loads), ``require.js`` and ``html-manager/embed-amd.js``. Cached per user, keyed by the
    pinned versions above; written atomically (temporary folder, then rename).
    """
    import subprocess
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
    with tempfile.TemporaryDirectory(dir=dest.parent) as name:
        tmp = Path(name)
        specs = [f"{pkg}@{version}" for pkg, version in VENDOR_PACKAGES.items()]
        subprocess.run(
            [npm, "pack", "--silent", *specs], cwd=tmp, check=True, stdout=subprocess.DEVNULL
        )
        out = tmp / "vendor"
        for archive in sorted(tmp.glob("*.tgz")):
            _unpack(archive, out)
        (out / "versions.json").write_text(json.dumps(VENDOR_PACKAGES, indent=2) + "\n")
        if not dest.exists():
            os.replace(out, dest)
    return dest
