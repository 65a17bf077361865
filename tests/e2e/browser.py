"""Chromium (Debian's, driven by Playwright) for the dashboard's tests: the browser, pages that record
what went wrong in them, screenshots kept in artifacts/dashboard/ (CI keeps them as test artifacts)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "artifacts" / "dashboard"
DOCS = REPO / "docs"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

# Installed before any page script: every Content-Security-Policy violation the page causes, and a
# marker an injected script would set.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber} ${e.sample}`));
"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@dataclass
class Watched:
    """A page, and what went wrong in it: uncaught errors, dialogs (alert, confirm), CSP violations."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__violations || []")

    def pwned(self) -> bool:
        return self.page.evaluate("window.__pwned !== undefined")

    def assert_clean(self) -> None:
        assert not self.errors, self.errors
        assert not self.dialogs, self.dialogs
        assert not self.violations(), self.violations()


@contextmanager
def watched_page(browser, base_url: str, viewport=DESKTOP, **context_options) -> Iterator[Watched]:
    context = browser.new_context(viewport=viewport, base_url=base_url, **context_options)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    watched = Watched(page)
    page.on("pageerror", lambda e: watched.errors.append(str(e)))

    def on_dialog(dialog) -> None:
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        yield watched
    finally:
        context.close()


def rendered(page, url: str | None = None) -> None:
    """Go to url (if given) and wait until its page has rendered and its requests have settled."""
    if url is not None:
        page.goto(url)
    # the page of the address now: a link's new hash is there before its hashchange starts that page
    page.wait_for_function(
        "() => { const v = document.querySelector('#view'); "
        "return v?.getAttribute('aria-busy') === 'false' && v.dataset.hash === location.hash; }"
    )
    page.wait_for_load_state("networkidle")


def moved(page, act: Callable[[], object]) -> None:
    """Do act (a click on a link, a choice in a select) and wait until the page it leads to has
    rendered: the hash changes only after the event, so the old page would otherwise pass for it."""
    before = page.url
    act()
    page.wait_for_function("before => location.href !== before", arg=before)
    rendered(page)


def shot(target, name: str) -> None:
    """A screenshot of a page (all of it) or of one element, kept as artifacts/dashboard/<name>.png."""
    path = str(ARTIFACTS / f"{name}.png")
    if hasattr(target, "goto"):
        target.screenshot(path=path, full_page=True)
    else:
        target.screenshot(path=path)


# Set to 1 to retake the screenshots docs/ shows; otherwise a test run leaves the tracked files alone.
UPDATE_DOCS = os.environ.get("MLPLAB_TEST_UPDATE_SCREENSHOTS") == "1"


def keep(target, name: str, folder: Path = DOCS / "screenshots") -> None:
    """shot(), and with MLPLAB_TEST_UPDATE_SCREENSHOTS=1 a copy as folder/<name>.png: the screenshots
    docs/ shows, retaken by the test that walks the pages they show, on models it trained."""
    shot(target, name)
    if not UPDATE_DOCS:
        return
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ARTIFACTS / f"{name}.png", folder / f"{name}.png")


def scroll_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def open_new_job_form(page) -> None:
    page.click("#new-job > summary")
    page.wait_for_selector("#spec-backend")


def until(page, function: str, timeout: float = 10.0) -> Any:
    """Poll a JavaScript function in the page until it returns something truthy. (Playwright's
    wait_for_function evaluates its predicate with eval, which the page's policy refuses.)"""
    return wait_for(lambda: page.evaluate(function), timeout, function, interval=0.05)
