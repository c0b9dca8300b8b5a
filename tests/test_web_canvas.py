"""The canvas page (`/`) in headless Chromium, against the real gateway and a real worker.

A number is written stroke by stroke, the way a person would: with a mouse into the boxes, with a
finger on a phone-sized touch screen, and with a pen on the free-form canvas. The digits the page shows
must be the digits written: that only holds if strokes reach the canvas smoothly, the boxes export in
order, the job round-trips through Redis and the worker, and the page renders the reading.
"""

from __future__ import annotations

import json

import pytest

from tests.web_strokes import digit_strokes, number_strokes, place
from tests.service import service_fixture
from tests.webtest import (DESKTOP, PHONE, Console, Finger, Mouse, Pen, box_of, chromium, needs_chromium,  # noqa: F401
                           screenshot, write)

pytestmark = [pytest.mark.browser, pytest.mark.integration, needs_chromium]

# Valid numbers (phone rules must have nothing to "correct"); the first holds all ten digits.
BOXES_NUMBER = "16172534890"
TOUCH_NUMBER = "14158675309"
LINE_NUMBER = "6502137489"  # ten digits, all different
RESULT_TIMEOUT_MS = 30_000

service = service_fixture(scope="module", workers=1)


def open_page(chromium, base_url, device, path="/"):
    context = chromium.new_context(base_url=base_url, **device)
    page = context.new_page()
    console = Console.watch(page)
    page.goto(path)
    page.wait_for_selector("body[data-ready]")
    return page, console


def write_in_boxes(page, device_input, number: str) -> None:
    canvases = page.locator("#boxes canvas.pad")
    assert canvases.count() == 11
    for i, digit in enumerate(number):
        scroll_before = page.evaluate("scrollY")
        write(device_input, place(digit_strokes(digit), *box_of(canvases.nth(i))))
        # touch-action: none: writing must not scroll the page under the finger
        assert page.evaluate("scrollY") == scroll_before, f"the page scrolled while writing in box {i + 1}"


def recognise(page) -> str:
    page.locator("#recognise").click()
    # (locator waits, not wait_for_function: the page's CSP forbids eval, and the tests keep the CSP on)
    page.locator("#digit-list .digit, #status[data-tone=error]").first.wait_for(timeout=RESULT_TIMEOUT_MS)
    assert page.locator("#status").get_attribute("data-tone") != "error", page.locator("#status").inner_text()
    return "".join(page.locator("#digit-list .digit .d").all_inner_texts())


def pointer_types(page) -> set[str]:
    return set(page.eval_on_selector_all("canvas.pad", "cs => cs.map(c => c.dataset.lastPointerType || '')")) - {""}


def test_mouse_in_boxes_reads_the_number_and_corrects_a_digit(chromium, service):
    page, console = open_page(chromium, service.url, DESKTOP)
    write_in_boxes(page, Mouse(page), BOXES_NUMBER)
    assert pointer_types(page) == {"mouse"}
    assert page.locator(".box[data-ink]").count() == 11

    digits = recognise(page)
    screenshot(page, "canvas-boxes-mouse")
    assert digits == BOXES_NUMBER
    assert page.locator("#result").inner_text() == "(617) 253-4890"
    assert "valid" in page.locator("#validity").inner_text()
    confidences = page.locator("#digit-list .digit .c").all_inner_texts()
    assert all(c.endswith("%") for c in confidences), confidences
    # every low-confidence digit is marked, and only those
    for chip in page.locator("#digit-list .digit").all():
        pct = int(chip.locator(".c").inner_text().rstrip("%"))
        assert ("low" in chip.get_attribute("class")) == (pct < 90)

    # Correct the 4th digit (7 -> 1) in place: the shown number follows at once, and the page tells
    # the user whether the server saved it (the corrections endpoint may not exist yet).
    page.locator('#digit-list .digit[data-position="3"]').click()
    edit = page.locator("#digit-list input.digit-edit")
    edit.fill("1")
    edit.press("Enter")
    assert page.locator("#result").inner_text() == "(611) 253-4890"
    assert page.locator('#digit-list .digit[data-position="3"]').get_attribute("class").split().count("edited") == 1
    page.locator("#status:not([data-busy])").wait_for()
    status = page.locator("#status").inner_text()
    assert "saved" in status.lower(), status
    # the server re-checked the corrected number: 611 is no US area code, and the page says so
    assert page.locator("#result").inner_text() == "(611) 253-4890"
    assert "not a valid US number" in page.locator("#validity").inner_text()
    assert page.locator('#digit-list .digit[data-position="3"]').get_attribute("class").split().count("edited") == 1
    screenshot(page, "canvas-boxes-corrected")

    # Clear one box, then all: the page forgets the drawing and the result
    page.get_by_role("button", name="Clear box 1", exact=True).click()
    assert page.locator(".box[data-ink]").count() == 10
    page.locator("#clear-all").click()
    assert page.locator(".box[data-ink]").count() == 0
    assert page.locator("#digit-list .digit").count() == 0
    console.assert_clean(allow=r"/corrections")


def test_touch_on_a_phone_reads_the_number(chromium, service):
    page, console = open_page(chromium, service.url, PHONE)
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), "the page is wider than a phone"
    write_in_boxes(page, Finger(page), TOUCH_NUMBER)
    assert pointer_types(page) == {"touch"}

    digits = recognise(page)
    page.locator("#result").scroll_into_view_if_needed()
    screenshot(page, "canvas-boxes-touch-phone")
    assert digits == TOUCH_NUMBER
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), "the result overflows the phone"
    console.assert_clean()


def test_pen_on_the_free_form_canvas_reads_the_number(chromium, service):
    page, console = open_page(chromium, service.url, DESKTOP)
    page.locator("label[for=mode-line]").click()
    canvas = page.locator("#line-canvas")
    assert canvas.is_visible() and not page.locator("#boxes-panel").is_visible()
    x, y, w, h = box_of(canvas)
    write(Pen(page), number_strokes(LINE_NUMBER, x + 0.05 * w, y + 0.1 * h, 0.9 * w, 0.75 * h))
    assert page.eval_on_selector("#line-canvas", "c => c.dataset.lastPointerType") == "pen"

    digits = recognise(page)
    screenshot(page, "canvas-free-form-pen")
    assert digits == LINE_NUMBER
    console.assert_clean()


def _read_258_staged(chromium, service, stage):
    """Write 2, 5, 8 in the first boxes and recognise them, the real job's answer passing through
    ``stage(item)`` on its way to the page (clean strokes read at ~99 %, so doubt has to be staged)."""
    page, console = open_page(chromium, service.url, DESKTOP)
    boxes = page.locator("#boxes canvas.pad")
    for i, digit in enumerate("258"):
        write(Mouse(page), place(digit_strokes(digit), *box_of(boxes.nth(i))))

    def restage(route):
        response = route.fetch()
        job = response.json()
        for item in job.get("items") or []:
            if item.get("digits_detail"):
                stage(item)
        route.fulfill(response=response, json=job)

    page.route("**/api/jobs/*", restage)
    assert recognise(page) == "258"
    return page, console


def test_low_confidence_digits_are_marked_on_the_digit_and_its_box(chromium, service):
    """The server's answer with the second digit's confidence lowered to 42 % and flagged."""
    def lower_second_digit(item):
        [d for d in item["digits_detail"] if not d["empty"]][1].update(confidence=0.42, needs_review=True)
        item.update(confidence=0.41, needs_review=True)

    page, console = _read_258_staged(chromium, service, lower_second_digit)
    chips = page.locator("#digit-list .digit")
    assert [("low" in c.get_attribute("class")) for c in chips.all()] == [False, True, False]
    assert chips.nth(1).locator(".c").inner_text() == "42%"
    assert "low confidence" in chips.nth(1).get_attribute("aria-label")
    assert [b.get_attribute("data-state") for b in page.locator(".box").all()[:4]] == ["ok", "low", "ok", None]
    assert "check the marked digits" in page.locator("#status").inner_text()
    screenshot(page, "canvas-low-confidence")
    console.assert_clean()


def test_an_unsure_number_with_no_unsure_digit_asks_for_a_check_without_marking_digits(chromium, service):
    """The server flags a number whose overall confidence is under the threshold though no digit is: the
    page says so, and marks no digit."""
    page, console = _read_258_staged(chromium, service, lambda item: item.update(needs_review=True))
    assert not any("low" in c.get_attribute("class") for c in page.locator("#digit-list .digit").all())
    assert "whole number is less sure" in page.locator("#status").inner_text()
    console.assert_clean()


def test_canvases_are_sharp_and_strokes_are_continuous(chromium, service):
    """The backing store is devicePixelRatio x the CSS size, and a fast stroke is one connected line
    (a page that painted dots per pointer sample would leave gaps between them)."""
    page, console = open_page(chromium, service.url, DESKTOP)
    canvas = page.locator("#boxes canvas.pad").first
    sizes = canvas.evaluate("c => [c.width, c.height, c.getBoundingClientRect().width, devicePixelRatio]")
    assert sizes[0] == round(sizes[2] * sizes[3]) and sizes[3] == 2
    x, y, w, h = box_of(canvas)
    Mouse(page).stroke([(x + 0.15 * w, y + 0.5 * h), (x + 0.85 * w, y + 0.5 * h)])  # two samples, far apart
    row = canvas.evaluate("""c => {
        const y = Math.round(c.height / 2), d = c.getContext('2d').getImageData(0, y, c.width, 1).data;
        const ink = []; for (let x = 0; x < c.width; x++) ink.push(d[4 * x + 3] > 128);
        return ink; }""")
    inked = [i for i, v in enumerate(row) if v]
    assert inked and inked[-1] - inked[0] + 1 == len(inked), "the stroke has gaps"
    assert len(inked) > 0.6 * len(row)
    console.assert_clean()


def test_errors_and_timeouts_are_shown_and_the_page_stays_usable(chromium, service):
    """The server's {error, message} reaches the user, and a job that never finishes ends in a clear
    timeout message with Recognise enabled again. Both answers are staged by intercepting requests."""
    context = chromium.new_context(base_url=service.url, **DESKTOP)
    page = context.new_page()
    console = Console.watch(page)
    page.goto("/?timeout=2")
    page.wait_for_selector("body[data-ready]")
    write(Mouse(page), place(digit_strokes("7"), *box_of(page.locator("#boxes canvas.pad").first)))

    refusal = {"error": "unsupported_type", "message": "box-01.png: not an image (PNG, JPEG, ...)"}
    page.route("**/api/jobs", lambda route: route.fulfill(status=415, content_type="application/json",
                                                        body=json.dumps(refusal)))
    page.locator("#recognise").click()
    page.wait_for_selector("#status[data-tone=error]")
    assert "box-01.png: not an image" in page.locator("#status").inner_text()
    assert page.locator("#recognise").is_enabled()

    page.unroute("**/api/jobs")
    never = {"id": "x", "status": "running", "created_at": "", "updated_at": "",
             "progress": {"done": 0, "total": 1}, "items": []}
    page.route("**/api/jobs/*", lambda route: route.fulfill(status=200, content_type="application/json",
                                                          headers={"Retry-After": "1"}, body=json.dumps(never)))
    page.locator("#recognise").click()
    assert page.locator("#recognise").is_disabled()
    # while waiting, the rest of the page works: switch tool and draw
    page.locator("label[for=tool-eraser]").click()
    assert page.evaluate("document.body.dataset.tool") == "eraser"
    page.wait_for_selector("#status[data-tone=error]", timeout=10_000)
    assert "No answer after 2 s" in page.locator("#status").inner_text()
    assert page.locator("#recognise").is_enabled()
    screenshot(page, "canvas-timeout")
    console.assert_clean(allow=r"/api/jobs")


def test_every_control_is_labelled_and_reachable_by_keyboard(chromium, service):
    page, console = open_page(chromium, service.url, DESKTOP)
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('button, input, select, canvas')]
        .filter(el => !(el.getAttribute('aria-label') || (el.labels && el.labels.length) || el.textContent.trim()))
        .map(el => el.outerHTML.slice(0, 80))""")
    assert unlabelled == []
    reached = set()
    for _ in range(20):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.name || document.activeElement.id"))
    assert {"mode", "tool", "region", "recognise", "clear-all"} <= reached, reached
    console.assert_clean()
