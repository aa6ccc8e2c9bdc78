"""Headless Chromium (Debian's ``chromium``) driven by Playwright; never a
downloaded browser (no ``playwright install``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
#: Screenshots of every run (gitignored).
ARTIFACTS = ROOT / "test-artifacts" / "observability"
#: The docs' figures, rewritten only when TTG_UPDATE_DOCS_IMAGES=1.
DOCS_IMAGES = ROOT / "docs" / "images"


@contextmanager
def chromium(user_data: Path) -> Iterator[Any]:
    """A browser context with a fresh profile in ``user_data``."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError("chromium is not installed; run scripts/services (apt-get install chromium)")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(user_data), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        try:
            yield context
        finally:
            context.close()


def screenshot(page: Any, name: str, **kw: Any) -> Path:
    """Save a screenshot as a test artifact (and as a docs figure when asked)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), **kw)
    if os.environ.get("TTG_UPDATE_DOCS_IMAGES") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMAGES / name)
    return path
