"""The built-in chat page in headless Chromium (Debian packages chromium and chromium-driver,
driven by Selenium): open /ui, enter a key, send a message, see a streamed answer with its
timings, stop a long one; a screenshot is kept in test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slmkit.security.keys import KeyStore
from tests.integration.conftest import MODEL, Server, start_server, stop_server

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def keyed(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp("ui")
    _, secret = KeyStore(tmp / "keys.json").create("inference", name="ui")
    server = start_server(models_dir, tmp / "server.log", SLM_KEYS_FILE=str(tmp / "keys.json"))
    yield server, secret
    stop_server(server)


def test_page_is_public_static_and_locked_down(keyed: tuple[Server, str]) -> None:
    server, _ = keyed
    page = httpx.get(f"{server.url}/ui/")
    assert page.status_code == 200 and "<title>slmkit chat</title>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{server.url}/ui/app.js").headers["content-type"].startswith("text/javascript")
    for probe in ("/ui/keys.json", "/ui/..%2Fkeys.json", "/ui/%2e%2e%2fserver.log"):
        assert httpx.get(f"{server.url}{probe}").status_code == 404, probe  # only the three files
    assert httpx.get(f"{server.url}/v1/models").status_code == 401  # the API still needs the key


def test_chat_in_headless_chromium(keyed: tuple[Server, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    server, secret = keyed
    wait = WebDriverWait(browser, 60)
    browser.get(f"{server.url}/ui/")
    key = browser.find_element(By.ID, "key")
    key.send_keys(secret)
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)
    wait.until(lambda d: MODEL in [o.text for o in Select(d.find_element(By.ID, "model")).options])
    # the store is the session's: other tests' models (a Modelfile with its own num_predict or
    # stop) may come first in the list, and the page preselects the first
    Select(browser.find_element(By.ID, "model")).select_by_visible_text(MODEL)
    browser.find_element(By.CSS_SELECTOR, "#settings summary").click()  # open the sampling settings
    browser.find_element(By.ID, "max_tokens").send_keys("64")  # a sampled answer may ramble on
    browser.find_element(By.ID, "prompt").send_keys("What is the capital of France?")
    browser.find_element(By.ID, "send").click()
    meta = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#log li.assistant .meta")))
    answer = browser.find_element(By.CSS_SELECTOR, "#log li.assistant .text").text
    assert answer.strip() and "Error" not in answer
    assert "time to first token" in meta.text and "tokens/s" in meta.text
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "ui-chat.png"))

    # The answer to stop must not end by itself first (a sampled story may stop early, and on a
    # busy machine the click comes late): the page's requests get vLLM's ignore_eos, and
    # 8000 tokens take far longer than a click
    browser.execute_script(
        """
        const send = window.fetch;
        window.fetch = (url, options) => {
          if (String(url).includes("/chat/completions") && options && options.body) {
            options = { ...options, body: JSON.stringify({ ...JSON.parse(options.body), ignore_eos: true }) };
          }
          return send(url, options);
        };
        """
    )
    browser.find_element(By.ID, "max_tokens").clear()
    browser.find_element(By.ID, "max_tokens").send_keys("8000")
    browser.find_element(By.ID, "prompt").send_keys("Write a very long story about the sea.")
    browser.find_element(By.ID, "send").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log li.assistant")) == 2)
    wait.until(
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, "#log li.assistant")[1].find_element(By.CLASS_NAME, "text").text
        )
    )
    browser.find_element(By.ID, "stop").click()
    last = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#log li.assistant .meta")[1:])
    assert "stopped" in last[0].text
