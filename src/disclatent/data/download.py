"""Download the public SPIDER dataset (van der Graaf et al. 2024, Zenodo, DOI below).

For real users only: nothing in the study downloads at run time, and the tests exercise this
code against a local HTTP server. Files are fetched with :mod:`pooch`:

* checksums: by default the registry (file names and md5 sums) is read from the Zenodo
  record through its DOI, and every file is verified against it;
* atomic: each file is downloaded to a temporary name and renamed when complete and
  verified, so an interrupted run never leaves a partial file;
* resumable: files already present with the right checksum are skipped, so re-running the
  command continues with the files still missing;
* zip archives (``images.zip``, ``masks.zip``) are unpacked into the output folder.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

SPIDER_DOI = "10.5281/zenodo.10159290"
SPIDER_FILES = ("overview.csv", "radiological_gradings.csv", "images.zip", "masks.zip")


def fetch_files(
    out: str | os.PathLike,
    registry: dict[str, str] | None = None,
    base_url: str | None = None,
    progressbar: bool = True,
) -> list[Path]:
    """Fetch the files of ``registry`` (name -> "md5:..."/"sha256:...") into ``out``.

    With ``registry=None`` the names and checksums come from SPIDER's Zenodo record (needs
    the network). ``base_url`` overrides where files are fetched from (a mirror, or a local
    server in tests). Returns the local paths, in registry order.
    """
    import pooch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fetcher = pooch.create(
        path=out / ".download",
        base_url=base_url or f"doi:{SPIDER_DOI}/",
        registry=dict(registry) if registry is not None else None,
    )
    if registry is None:
        fetcher.load_registry_from_doi()
        missing = [f for f in SPIDER_FILES if f not in fetcher.registry]
        if missing:
            raise RuntimeError(f"Zenodo record {SPIDER_DOI} lists no {', '.join(missing)}")
        names = list(SPIDER_FILES)
    else:
        names = list(registry)
    paths = []
    for name in names:
        path = Path(fetcher.fetch(name, progressbar=progressbar))
        if name.endswith(".zip"):
            _unpack_once(path, out)
        else:
            target = out / name
            if not target.exists() or target.read_bytes() != path.read_bytes():
                _link_or_copy(path, target)
        paths.append(path)
    return paths


def _link_or_copy(src: Path, dst: Path) -> None:
    import shutil

    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _unpack_once(archive: Path, out: Path) -> None:
    import pooch

    marker = out / ".download" / f"{archive.name}.unpacked"
    digest = pooch.file_hash(str(archive))
    if marker.exists() and marker.read_text().strip() == digest:
        return
    root = out.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            if not (out / member.filename).resolve().is_relative_to(root):
                raise ValueError(f"{archive}: refusing to extract {member.filename} outside {out}")
        zf.extractall(out)
    marker.write_text(digest + "\n")


def download_spider(out: str | os.PathLike, progressbar: bool = True) -> Path:
    """Download and unpack SPIDER into ``out`` (several GB), verified against Zenodo's md5s."""
    fetch_files(out, progressbar=progressbar)
    return Path(out)
