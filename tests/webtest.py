"""What the browser tests share: Debian's headless Chromium, console watching, screenshots, pen input.

Playwright drives /usr/bin/chromium (Playwright's own browser download does not work on these
machines). Pointer input goes through the browser's real input pipeline: `page.mouse` for a mouse, and
the DevTools protocol for touch (`Input.dispatchTouchEvent`) and pen (`Input.dispatchMouseEvent` with
pointerType "pen"), so the page sees the same PointerEvents a phone or a tablet would send, and
`touch-action` is honoured as on a device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"viewport": {"width": 1280, "height": 900}, "device_scale_factor": 2}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
)


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium per test module; each test opens its own context (cookies, viewport)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


def screenshot(page, name: str) -> Path:
    """Full-page screenshot kept as a test artifact (artifacts/ is git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class Console:
    """Every console error and uncaught exception of a page, so a test can demand there were none.

    Chromium logs each non-2xx fetch as a console error ("Failed to load resource"); a test that provokes
    one on purpose names its URL in `allow`, and every other error still fails the test."""

    errors: list[str] = field(default_factory=list)

    @classmethod
    def watch(cls, page) -> "Console":
        console = cls()
        page.on("console", lambda m: m.type == "error" and console.errors.append(f"{m.text} @ {m.location.get('url', '')}"))
        page.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))
        return console

    def assert_clean(self, allow: str | None = None) -> None:
        pattern = re.compile(allow) if allow else None
        unexpected = [
            e for e in self.errors
            if not (pattern and e.startswith("Failed to load resource") and pattern.search(e))
        ]
        assert not unexpected, f"console errors: {unexpected}"


# --- writing with a mouse, a finger or a pen ---------------------------------------------------------


class Mouse:
    def __init__(self, page):
        self.page = page

    def stroke(self, points):
        mouse = self.page.mouse
        mouse.move(*points[0])
        mouse.down()
        for x, y in points[1:]:
            mouse.move(x, y)
        mouse.up()


class Finger:
    """One-finger touch through the DevTools protocol (the context must have has_touch=True)."""

    def __init__(self, page):
        self.cdp = page.context.new_cdp_session(page)

    def _touch(self, kind: str, points):
        touch_points = [{"x": x, "y": y, "id": 1, "radiusX": 12, "radiusY": 12, "force": 0.6} for x, y in points]
        self.cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touch_points})

    def stroke(self, points):
        self._touch("touchStart", [points[0]])
        for p in points[1:]:
            self._touch("touchMove", [p])
        self._touch("touchEnd", [])


class Pen:
    """A stylus: mouse events that Chromium reports with pointerType "pen"."""

    def __init__(self, page):
        self.cdp = page.context.new_cdp_session(page)

    def _send(self, kind: str, x: float, y: float, pressed: bool):
        self.cdp.send("Input.dispatchMouseEvent", {
            "type": kind, "x": x, "y": y, "button": "left", "buttons": 1 if pressed else 0,
            "clickCount": 1, "pointerType": "pen", "force": 0.5 if pressed else 0,
        })

    def stroke(self, points):
        self._send("mouseMoved", *points[0], pressed=False)
        self._send("mousePressed", *points[0], pressed=True)
        for x, y in points[1:]:
            self._send("mouseMoved", x, y, pressed=True)
        self._send("mouseReleased", *points[-1], pressed=False)


def write(device, strokes) -> None:
    for stroke in strokes:
        device.stroke(stroke)


def box_of(element) -> tuple[float, float, float, float]:
    """An element's box in viewport coordinates, scrolled into view first: input outside the
    viewport goes nowhere."""
    element.scroll_into_view_if_needed()
    b = element.bounding_box()
    return b["x"], b["y"], b["width"], b["height"]
