"""The built-in chat page in headless Chromium (Debian packages chromium and chromium-driver,
driven by Selenium), against a real server with an API key.

Real answers from the default model for what a model can be made to do (stream, stop,
regenerate, reload); for what it cannot be made to say on demand (Markdown, hostile HTML,
a failure, a stream paced by the test) the page's own fetch of /v1/chat/completions is
answered by the test with the server's SSE shape, so the page's whole path from stream to
screen is what is tested. Screenshots of each state go to docs/screenshots/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slmkit.security.keys import KeyStore
from tests.integration.conftest import MODEL, Server, start_server, stop_server

pytestmark = pytest.mark.integration
SHOTS = Path(__file__).parents[2] / "docs" / "screenshots"

# The page's chat requests are recorded in window.__requests; while window.__mock is set the
# test answers them: {status, message} fails the request; otherwise a stream whose pieces
# the test sends with window.__push(text) and ends with window.__end().
INSTRUMENT = """
window.__requests = [];
window.__mock = null;
const real = window.fetch;
const sse = (obj) => new TextEncoder().encode("data: " + JSON.stringify(obj) + "\\n\\n");
window.fetch = (url, options) => {
  if (!String(url).includes("/v1/chat/completions")) return real(url, options);
  const body = JSON.parse(options.body);
  window.__requests.push(body);
  const mock = window.__mock;
  if (!mock) return real(url, { ...options, body: JSON.stringify({ ...body, ...(window.__extra || {}) }) });
  if (mock.status) {
    return Promise.resolve(new Response(JSON.stringify({ error: { message: mock.message } }),
      { status: mock.status, headers: { "Content-Type": "application/json" } }));
  }
  const stream = new ReadableStream({ start(c) {
    window.__push = (text) => c.enqueue(sse({ choices: [{ index: 0, delta: { content: text } }] }));
    window.__end = () => {
      c.enqueue(sse({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 } }));
      c.enqueue(new TextEncoder().encode("data: [DONE]\\n\\n"));
      c.close();
    };
    for (const piece of mock.pieces || []) window.__push(piece);
    if (mock.end) window.__end();
  } });
  return Promise.resolve(new Response(stream, { headers: { "Content-Type": "text/event-stream" } }));
};
"""

HOSTILE = (
    "## Result\n\nSome **bold** text and a [safe link](https://example.com).\n\n"
    "<img src=x onerror=\"window.__pwned='img'\">\n\n"
    "[click me](javascript:window.__pwned='link')\n\n"
    '<a href="javascript:window.__pwned=1">raw link</a> <svg onload="window.__pwned=\'svg\'"></svg>\n\n'
    "```html\n<script>window.__pwned='script'</script>\n```\n\n"
    "```python\ndef add(a, b):\n    return a + b\n```\n"
)


@pytest.fixture(scope="module")
def keyed(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp("ui")
    _, secret = KeyStore(tmp / "keys.json").create("inference", name="ui")
    server = start_server(models_dir, tmp / "server.log", SLM_KEYS_FILE=str(tmp / "keys.json"))
    yield server, secret
    stop_server(server)


def _open(browser: Any, server: Server, secret: str, *, fresh: bool = True) -> Any:
    """The page, signed in, instrumented, with the model list loaded; ``fresh``: no saved
    conversations (each test starts from an empty browser)."""
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"{server.url}/ui/")
    if fresh:
        browser.execute_script(
            "localStorage.clear(); localStorage.setItem('slmkit.key', arguments[0]);", secret
        )
        browser.get(f"{server.url}/ui/")
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    wait.until(lambda d: d.execute_script("return document.getElementById('model').options.length > 0"))
    browser.execute_script(INSTRUMENT)
    return wait


def _send(browser: Any, text: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "prompt").send_keys(text)
    browser.find_element(By.ID, "send").click()


def _idle(wait: Any) -> None:
    """The answer is finished: Send is back."""
    wait.until(lambda d: d.execute_script("return !document.getElementById('send').hidden"))


def _running(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics/load").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:num_requests_running{")
    )


def _shot(browser: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SHOTS / f"{name}.png"))


def test_page_is_public_static_and_locked_down(keyed: tuple[Server, str]) -> None:
    server, _ = keyed
    page = httpx.get(f"{server.url}/ui/")
    assert page.status_code == 200 and "<title>slmkit chat</title>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in (
        "app.js",
        "markdown.js",
        "vendor/marked.umd.js",
        "vendor/purify.min.js",
        "vendor/highlight.min.js",
    ):
        assert httpx.get(f"{server.url}/ui/{asset}").headers["content-type"].startswith("text/javascript")
    assert "MIT" in httpx.get(f"{server.url}/ui/vendor/LICENSE.marked.txt").text
    for probe in ("/ui/keys.json", "/ui/..%2Fkeys.json", "/ui/%2e%2e%2fserver.log", "/ui/vendor/..%2Fapp.js",
                  "/ui/vendor/marked.umd.js.map", "/ui/vendor/"):  # fmt: skip
        assert httpx.get(f"{server.url}{probe}").status_code == 404, probe  # only the listed files
    assert httpx.get(f"{server.url}/v1/models").status_code == 401  # the API still needs the key
    front = httpx.get(f"{server.url}/", headers={"Accept": "text/html"})
    assert 'href="/ui/"' in front.text  # a browser at the root finds the chat page


def test_chat_streams_with_timings_and_stop_cancels(keyed: tuple[Server, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    server, secret = keyed
    wait = _open(browser, server, secret)
    # the server's default model is preselected, whatever sorts first in the store
    assert Select(browser.find_element(By.ID, "model")).first_selected_option.text == MODEL
    browser.find_element(By.CSS_SELECTOR, "#settings summary").click()
    browser.find_element(By.ID, "max_tokens").send_keys("64")
    browser.find_element(By.ID, "temperature").send_keys("0")
    _send(browser, "What is the capital of France?")
    meta = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#log li.assistant .meta"))
    answer = browser.find_element(By.CSS_SELECTOR, "#log li.assistant .text").text
    assert answer.strip() and "Error" not in answer
    assert "time to first token" in meta.text and "tokens/s" in meta.text
    assert browser.execute_script("return window.__requests[0].temperature") == 0
    browser.find_element(By.CSS_SELECTOR, "#settings summary").click()
    _shot(browser, "chat")

    # a long answer (vLLM's ignore_eos: it cannot end by itself before the click), then Stop
    browser.execute_script("window.__extra = { ignore_eos: true, max_tokens: 8000 };")
    _send(browser, "Write a very long story about the sea.")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log li.assistant")) == 2)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#log li.assistant .text")[1].text.strip())
    browser.find_element(By.ID, "stop").click()
    last = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#log li.assistant .meta")[1:])
    assert "stopped" in last[0].text
    wait.until(lambda d: _running(server) == 0)  # the server stopped generating too


def test_markdown_renders_and_hostile_html_runs_nothing(keyed: tuple[Server, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    server, secret = keyed
    wait = _open(browser, server, secret)
    browser.execute_script(
        "window.__mock = { pieces: arguments[0], end: true };", [HOSTILE[:40], HOSTILE[40:]]
    )
    _send(browser, "Show me some Markdown.")
    _idle(wait)
    text = browser.find_element(By.CSS_SELECTOR, "#log li.assistant .text")
    assert text.find_element(By.TAG_NAME, "h2").text == "Result"
    assert text.find_element(By.TAG_NAME, "strong").text == "bold"
    python = text.find_element(By.CSS_SELECTOR, "pre code.language-python")
    assert "hljs" in python.get_attribute("class") and python.find_elements(
        By.CSS_SELECTOR, "span.hljs-keyword"
    )
    assert len(text.find_elements(By.CSS_SELECTOR, "pre > button.copy-code")) == 2
    html_block = text.find_element(By.CSS_SELECTOR, "pre code.language-html")
    assert "<script>window.__pwned='script'</script>" in html_block.text  # shown, not run
    safe = text.find_element(By.PARTIAL_LINK_TEXT, "safe link")
    assert safe.get_attribute("rel") == "noopener noreferrer" and safe.get_attribute("target") == "_blank"
    hrefs = [a.get_attribute("href") or "" for a in text.find_elements(By.TAG_NAME, "a")]
    assert not [h for h in hrefs if h.lower().startswith("javascript")]
    assert not text.find_elements(By.CSS_SELECTOR, "img, svg, script, [onerror], [onload]")
    assert "<img src=x" in text.text  # raw HTML in an answer is shown as text
    for link in text.find_elements(By.PARTIAL_LINK_TEXT, "click me") + text.find_elements(
        By.LINK_TEXT, "raw link"
    ):
        link.click()
    assert browser.execute_script("return window.__pwned === undefined")
    _shot(browser, "chat-markdown")


def test_conversation_survives_reload_regenerate_and_edit(keyed: tuple[Server, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    server, secret = keyed
    wait = _open(browser, server, secret)
    browser.find_element(By.CSS_SELECTOR, "#settings summary").click()
    browser.find_element(By.ID, "max_tokens").send_keys("24")
    _send(browser, "Name three colors.")
    _idle(wait)
    first = browser.find_element(By.CSS_SELECTOR, "#log li.assistant .text").text
    assert first.strip()

    wait = _open(browser, server, secret, fresh=False)  # reload: the conversation is still there
    assert browser.find_element(By.CSS_SELECTOR, "#log li.user .text").text == "Name three colors."
    assert browser.find_element(By.CSS_SELECTOR, "#log li.assistant .text").text == first
    title = browser.find_element(By.CSS_SELECTOR, "#conversations li[aria-current] .title")
    assert title.text == "Name three colors."
    assert browser.find_element(By.ID, "max_tokens").get_attribute("value") == "24"  # settings kept too

    # regenerate: the last answer is replaced (one answer, asked again with the same history)
    browser.execute_script("window.__mock = { pieces: ['Red, green, blue.'], end: true };")
    browser.find_element(By.CSS_SELECTOR, "#log li.assistant button.regenerate").click()
    _idle(wait)
    answers = browser.find_elements(By.CSS_SELECTOR, "#log li.assistant .text")
    assert [a.text for a in answers] == ["Red, green, blue."]
    sent = browser.execute_script("return window.__requests[0].messages")
    assert sent == [{"role": "user", "content": "Name three colors."}]

    # edit the question: what followed it goes, the edited one is asked
    browser.find_element(By.CSS_SELECTOR, "#log li.user button.edit").click()
    area = browser.find_element(By.CSS_SELECTOR, "#log li.user textarea")
    area.clear()
    area.send_keys("Name two fruits.")
    browser.execute_script("window.__mock = { pieces: ['Apple and pear.'], end: true };")
    browser.find_element(By.CSS_SELECTOR, "#log li.user button.save").click()
    _idle(wait)
    assert browser.execute_script("return window.__requests[1].messages") == [
        {"role": "user", "content": "Name two fruits."}
    ]
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#log li .text")] == [
        "Name two fruits.",
        "Apple and pear.",
    ]

    # a second conversation, then switch back, rename, delete
    browser.find_element(By.ID, "new-chat").click()
    assert not browser.find_elements(By.CSS_SELECTOR, "#log li")
    browser.execute_script("window.__mock = { pieces: ['Hi!'], end: true };")
    _send(browser, "Hello")
    _idle(wait)
    titles = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#conversations .title")]
    assert titles == ["Hello", "Name three colors."]
    browser.find_elements(By.CSS_SELECTOR, "#conversations .title")[1].click()
    assert browser.find_element(By.CSS_SELECTOR, "#log li.user .text").text == "Name two fruits."
    browser.find_elements(By.CSS_SELECTOR, "#conversations .rename")[1].click()
    box = browser.find_element(By.CSS_SELECTOR, "#conversations .rename-input")
    box.send_keys("Fruit\n")  # the old title is selected: typing replaces it
    assert "Fruit" in [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#conversations .title")]
    browser.find_elements(By.CSS_SELECTOR, "#conversations .delete")[0].click()
    browser.switch_to.alert.accept()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#conversations li")) == 1
    stored = json.loads(browser.execute_script("return localStorage.getItem('slmkit.conversations')"))
    assert len(stored) == 1


def test_a_failed_turn_is_shown_and_not_sent_again(keyed: tuple[Server, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    server, secret = keyed
    wait = _open(browser, server, secret)
    browser.execute_script("window.__mock = { status: 400, message: 'messages: prompt is too long' };")
    _send(browser, "A question that fails")
    _idle(wait)
    failed = browser.find_element(By.CSS_SELECTOR, "#log li.assistant.error")
    assert "prompt is too long" in failed.text
    browser.execute_script("window.__mock = { pieces: ['Fine.'], end: true };")
    _send(browser, "A question that works")
    _idle(wait)
    assert browser.execute_script("return window.__requests[1].messages") == [
        {"role": "user", "content": "A question that works"}
    ]


def test_the_page_follows_the_stream_until_the_reader_scrolls_up(
    keyed: tuple[Server, str], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    server, secret = keyed
    wait = _open(browser, server, secret)
    at_bottom = (
        "const s = document.getElementById('scroller');"
        " return s.scrollHeight - s.scrollTop - s.clientHeight < 4;"
    )
    browser.execute_script("window.__mock = { pieces: [] };")
    _send(browser, "Tell me a long story.")
    wait.until(lambda d: d.execute_script("return typeof window.__push === 'function'"))
    for i in range(60):
        browser.execute_script("window.__push(arguments[0])", f"Line {i} of the story.\n\n")
    wait.until(lambda d: "Line 59" in d.find_elements(By.CSS_SELECTOR, "#log li.assistant .text")[-1].text)
    assert browser.execute_script(at_bottom)  # followed to the end
    browser.execute_script("document.getElementById('scroller').scrollTop = 0;")
    wait.until(lambda d: d.find_element(By.ID, "follow").is_displayed())
    for i in range(60, 80):
        browser.execute_script("window.__push(arguments[0])", f"Line {i} of the story.\n\n")
    wait.until(lambda d: "Line 79" in d.find_elements(By.CSS_SELECTOR, "#log li.assistant .text")[-1].text)
    assert browser.execute_script("return document.getElementById('scroller').scrollTop") == 0  # left alone
    browser.find_element(By.ID, "follow").click()
    assert browser.execute_script(at_bottom)
    browser.execute_script("window.__end()")
    _idle(wait)


def test_narrow_screen_dark_mode_and_models_view(keyed: tuple[Server, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    server, secret = keyed
    browser.set_window_size(360, 740)
    try:
        wait = _open(browser, server, secret)
        wide = (
            "```\n"
            + "x" * 300
            + "\n```\n\n| a | b | c | d | e | f |\n|---|---|---|---|---|---|\n"
            + "| long cell |" * 6
        )
        browser.execute_script("window.__mock = { pieces: [arguments[0]], end: true };", wide)
        _send(browser, "A" * 200)
        _idle(wait)
        no_scroll = "return document.documentElement.scrollWidth <= window.innerWidth"
        assert browser.execute_script(no_scroll)
        edge = "return document.getElementById('sidebar').getBoundingClientRect()"
        assert browser.execute_script(edge)["right"] <= 0  # the conversation list is a drawer here
        _shot(browser, "chat-360px")
        browser.find_element(By.ID, "toggle-sidebar").click()
        wait.until(lambda d: d.execute_script(edge)["left"] >= 0)
        assert browser.execute_script(no_scroll)
        _shot(browser, "chat-360px-conversations")
    finally:
        browser.set_window_size(1100, 800)
    wait = _open(browser, server, secret, fresh=False)
    browser.find_element(By.ID, "theme").click()
    theme = browser.execute_script("return document.documentElement.dataset.theme")
    if theme != "dark":
        browser.find_element(By.ID, "theme").click()
    assert browser.execute_script("return document.documentElement.dataset.theme") == "dark"
    assert (
        browser.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
    )
    _shot(browser, "chat-dark")
    wait = _open(browser, server, secret, fresh=False)  # the choice is kept
    assert browser.execute_script("return document.documentElement.dataset.theme") == "dark"

    browser.find_element(By.ID, "open-models").click()
    wait.until(lambda d: MODEL in d.find_element(By.ID, "loaded").text)
    loaded = browser.find_element(By.ID, "loaded").text
    assert "MB" in loaded and ("min" in loaded or "kept loaded" in loaded)
    assert MODEL in browser.find_element(By.ID, "stored").text
    browser.find_element(By.ID, "pull-name").send_keys("no-such-registry.invalid/none/nothing:1")
    browser.find_element(By.ID, "pull").click()
    wait.until(lambda d: "Pull failed" in d.find_element(By.ID, "pull-status").text)  # said, in one line
    _shot(browser, "chat-models")
    browser.execute_script("localStorage.removeItem('slmkit.theme')")


@pytest.fixture(scope="module")
def admin_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """A server with an admin key that may pull from a registry on 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("ui-admin")
    _, secret = KeyStore(tmp / "keys.json").create("admin", name="ui-admin")
    server = start_server(
        models_dir, tmp / "server.log", SLM_KEYS_FILE=str(tmp / "keys.json"), SLM_PULL_PRIVATE="1"
    )
    yield server, secret
    stop_server(server)


def test_models_view_pulls_with_progress_and_deletes(admin_server: tuple[Server, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tests.fakes.registry import FakeRegistry

    server, secret = admin_server
    registry = FakeRegistry()
    registry.add_model("library/ui-pulled:1", server.store.get(MODEL).model_path.read_bytes())
    registry.start()
    name = f"{registry.host}/library/ui-pulled:1"
    try:
        wait = _open(browser, server, secret)
        browser.find_element(By.ID, "open-models").click()
        # every text the status line shows, as it changes
        browser.execute_script(
            "window.__seen = []; new MutationObserver(() => window.__seen.push("
            "document.getElementById('pull-status').textContent)).observe("
            "document.getElementById('pull-status'), { childList: true, characterData: true, subtree: true });"  # noqa: E501
        )
        browser.find_element(By.ID, "pull-name").send_keys(name)
        browser.find_element(By.ID, "pull-insecure").click()
        browser.find_element(By.ID, "pull").click()
        wait.until(lambda d: d.find_element(By.ID, "pull-status").text == f"Pulled {name}.")
        seen = browser.execute_script("return window.__seen")
        assert any(t.startswith("pulling ") and t.endswith("%") for t in seen), seen  # progress in percent
        wait.until(lambda d: name in d.find_element(By.ID, "stored").text)
        wait.until(lambda d: name in [o.text for o in Select(d.find_element(By.ID, "model")).options])
        row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#stored tbody tr") if name in r.text)
        row.find_element(By.TAG_NAME, "button").click()
        browser.switch_to.alert.accept()
        wait.until(lambda d: name not in d.find_element(By.ID, "stored").text)
        assert not server.store.exists(name)
    finally:
        registry.stop()


def test_text_files_are_attached_to_the_message(
    keyed: tuple[Server, str], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    server, secret = keyed
    wait = _open(browser, server, secret)
    notes = tmp_path / "notes.md"
    notes.write_text("# Meeting\n\nShip on Friday.\n")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02")
    browser.find_element(By.ID, "files").send_keys(f"{notes}\n{binary}")
    wait.until(lambda d: "notes.md" in d.find_element(By.ID, "attachments").text)
    assert "blob.bin" not in browser.find_element(By.ID, "attachments").text  # not text: refused, said
    assert "blob.bin" in browser.find_element(By.ID, "status").text
    browser.execute_script("window.__mock = { pieces: ['Friday.'], end: true };")
    _send(browser, "When do we ship?")
    _idle(wait)
    sent = browser.execute_script("return window.__requests[0].messages[0].content")
    assert sent.startswith("When do we ship?") and "File: notes.md" in sent and "Ship on Friday." in sent
    assert "notes.md" in browser.find_element(By.CSS_SELECTOR, "#log li.user .chips").text
    assert not browser.find_element(By.ID, "attachments").text  # sent with this message only
