"""Checks of the rendered book: every page's images decode, no page shows a traceback.

``python -m disclatent check-pages`` runs :func:`check_pages` on ``_build/html`` and, with a
headless Chromium on the PATH, screenshots every page so a person can look at it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

#: folders of the HTML output that hold assets, not pages
SKIP_DIRS = frozenset({"_sources", "_static", "vendor", "_images"})
#: pages Sphinx makes that are not the book's
SKIP_PAGES = frozenset({"genindex.html", "search.html", "index.html"})
IMAGE = re.compile(r'<img[^>]+src="([^"]+)"')
ERROR = re.compile(r"Traceback \(most recent call last\)|" r'class="output traceback')
CHROMIUM_FLAGS = (
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
)


def book_pages(html_dir: Path) -> list[Path]:
    """The book's own pages under ``html_dir`` (no assets, index or search pages)."""
    return sorted(
        p
        for p in html_dir.rglob("*.html")
        if not SKIP_DIRS & set(p.relative_to(html_dir).parts[:-1]) and p.name not in SKIP_PAGES
    )


def broken_images(page: Path, sources: list[str]) -> list[str]:
    """The image sources of ``page`` that are missing or do not decode (data URIs skipped)."""
    from PIL import Image

    broken = []
    for src in sources:
        if src.startswith("data:"):
            continue
        path = (page.parent / src.split("?")[0]).resolve()
        try:
            with Image.open(path) as im:
                im.verify()
        except (OSError, ValueError):
            broken.append(src)
    return broken


def screenshot(page: Path, shot: Path, browser: str) -> str | None:
    """Render ``page`` with headless Chromium to ``shot``; its path, or None if it failed."""
    shot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={shot.parent / '.chromium'}",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        check=False,
        capture_output=True,
        timeout=120,
    )
    return str(shot) if shot.exists() else None


def check_pages(
    html_dir: str | os.PathLike,
    screenshots: str | os.PathLike | None = None,
    chromium: str | None = None,
) -> list[dict]:
    """Check every rendered page: its images exist and decode, and count its tables.

    With ``screenshots`` (a folder) and a headless Chromium on the PATH, also renders each
    page to ``<screenshots>/<page>.png`` so a person can look at it. Returns one dict per
    page: ``page, images, broken_images, tables, errors, screenshot``.
    """
    root = Path(html_dir)
    browser = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    out = []
    for page in book_pages(root):
        text = page.read_text()
        sources = IMAGE.findall(text)
        name = str(page.relative_to(root))
        shot = None
        if screenshots and browser:
            target = Path(screenshots) / (name.replace("/", "__")[:-5] + ".png")
            shot = screenshot(page, target, browser)
        out.append(
            {
                "page": name,
                "images": len(sources),
                "broken_images": broken_images(page, sources),
                "tables": text.count("<table"),
                "errors": len(ERROR.findall(text)),
                "screenshot": shot,
            }
        )
    return out
