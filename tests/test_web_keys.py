"""The pages on a gateway with API keys on: the page asks the person for a key when the server says one is
needed (401 naming its header), sends it with every request after that, and asks again when it is refused.
Real gateway, real worker, headless Chromium; the key never appears in the page address.
"""

from __future__ import annotations

import pytest

from tests.service import service_fixture
from tests.test_web_canvas import BOXES_NUMBER, RESULT_TIMEOUT_MS, open_page, write_in_boxes
from tests.webtest import DESKTOP, Mouse, chromium, needs_chromium  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.integration, needs_chromium]

KEY = "web-test-key-0123456789abcdef"
service = service_fixture(scope="module", workers=1, env={"PHONEREADER_API_KEYS": f"web:{KEY}"})


def test_canvas_page_asks_for_a_key_and_uses_it(chromium, service):
    page, console = open_page(chromium, service.url, DESKTOP)
    answers, prompts = ["not-the-key", KEY], []

    def answer(dialog):
        prompts.append(dialog.message)
        dialog.accept(answers.pop(0))

    page.on("dialog", answer)
    write_in_boxes(page, Mouse(page), BOXES_NUMBER)

    # a wrong key: asked once, refused, and the page says why
    page.locator("#recognise").click()
    page.locator("#status[data-tone=error]").wait_for(timeout=RESULT_TIMEOUT_MS)
    assert "X-API-Key" in prompts[0] and "needs an API key" in prompts[0]
    assert "API key is not valid" in page.locator("#status").inner_text()

    # the next try asks again, gets the right key, and the whole round trip (submit, poll) carries it
    page.locator("#recognise").click()
    page.locator("#digit-list .digit").first.wait_for(timeout=RESULT_TIMEOUT_MS)
    assert "refused" in prompts[1]
    assert "".join(page.locator("#digit-list .digit .d").all_inner_texts()) == BOXES_NUMBER
    assert len(prompts) == 2 and KEY not in page.url
    console.assert_clean(allow=r"/api/jobs")
