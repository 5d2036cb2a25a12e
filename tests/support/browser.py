"""Open an HTML report in a real headless browser (Debian's chromium, driven by playwright) and report
what a person would hit: console errors, page errors, requests that left the file, and images that failed.

Reused by every HTML report's test: `check_page(html_path, screenshot_path) -> PageCheck`. The browser is
the system's (`apt-get install chromium`; `.ci/run` installs it), never one `playwright install`
downloads. Tests call `require_chromium()` first, which skips them with the reason when it is absent.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where screenshots are kept as test artifacts (git-ignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass
class PageCheck:
    """What the browser saw."""

    console_errors: list[str] = field(default_factory=list)  # console.error, uncaught page errors
    external_requests: list[str] = field(default_factory=list)  # anything not from the file itself
    text: str = ""  # the page's visible text (document.body.innerText)
    images_total: int = 0
    images_loaded: int = 0  # <img> elements that decoded to a picture
    screenshot: Path | None = None

    @property
    def errors(self) -> list[str]:
        """Everything that should fail a self-contained report."""
        return [*self.console_errors, *(f"external request: {u}" for u in self.external_requests)]


def chromium_path() -> str | None:
    override = os.environ.get("GRADER_CHROMIUM")
    for candidate in ([override] if override else []) + list(CHROMIUM_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("chromium")


def require_chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    return path


def check_page(html_path: str | Path, screenshot_path: str | Path, *, width: int = 1100) -> PageCheck:
    """Load `html_path` from disk in headless chromium, screenshot the full page to `screenshot_path`."""
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    html_path = Path(html_path).resolve()
    screenshot_path = Path(screenshot_path)
    screenshot_path.parent.mkdir(parents=True, exist_ok=True)
    page_url = html_path.as_uri()
    result = PageCheck(screenshot=screenshot_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=LAUNCH_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": 800})
            page = context.new_page()
            page.on("console", lambda msg: msg.type == "error" and result.console_errors.append(msg.text))
            page.on("pageerror", lambda exc: result.console_errors.append(f"page error: {exc}"))

            def route(request_route) -> None:  # noqa: ANN001
                url = request_route.request.url
                if url == page_url or url.startswith("data:"):
                    request_route.continue_()
                else:  # a self-contained report fetches nothing: record it and refuse
                    result.external_requests.append(url)
                    request_route.abort()

            page.route("**/*", route)
            page.goto(page_url, wait_until="load")
            result.text = page.evaluate("() => document.body ? document.body.innerText : ''")
            result.images_total = page.evaluate("() => document.images.length")
            result.images_loaded = page.evaluate(
                "() => Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
            )
            page.screenshot(path=str(screenshot_path), full_page=True)
            context.close()
        finally:
            browser.close()
    return result
