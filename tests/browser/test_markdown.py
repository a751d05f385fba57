"""Answers drawn as Markdown (static/arena/render.js) in headless Chromium: what renders, what never
runs or loads, and the prompt's length limit said before sending."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from arena.models import Battle
from tests.browser.conftest import BROWSER_TESTS, VOTES_OPEN
from tests.upstream import Behaviour

pytestmark = BROWSER_TESTS

OpenPage = Callable[..., Any]
Orm = Callable[[Callable[[], Any]], Any]

RICH = r"""## Results

| Model | Score | Notes |
|:------|------:|-------|
| first | 1.5 | *good* |
| second | 2.25 | ~~bad~~ fine |

```python
def add(a, b):
    return a + b
```

Inline math $e^{i\pi} + 1 = 0$ and a display:

$$
\int_0^1 x^2\,dx = \frac{1}{3}
$$

1. Step one
   - nested **bold**
   - nested `code`
2. Step two

> A quoted line with a [link](https://example.org/docs).
"""

XSS = r"""<script>window.__xss = "script"</script>

<img src=x onerror="window.__xss = 'onerror'">

[click me](javascript:window.__xss='link')

<a href="javascript:window.__xss='html link'">html link</a>

<svg onload="window.__xss='svg'"><script>window.__xss='svg script'</script></svg>

![a remote picture](http://example.invalid/x.png)

<iframe src="http://example.invalid/frame"></iframe>

<div style="background: url(http://example.invalid/bg.png)">styled</div>

$\href{javascript:window.__xss='tex'}{tex link}$ and $\includegraphics{http://example.invalid/t.png}$

[ref]: javascript:window.__xss='ref'
"""

# Markup no rendered answer may hold, whatever the answer said.
DANGEROUS = """(root) => [
  ...root.querySelectorAll("script, img, iframe, object, embed, image, use, foreignObject, style, link"),
  ...[...root.querySelectorAll("*")].filter((el) =>
      [...el.attributes].some((a) => a.name.startsWith("on")
        || /^\\s*javascript:/i.test(a.value)
        || /url\\s*\\(/i.test(a.value)
        || ((a.name === "src" || a.name.endsWith("href")) && /^https?:\\/\\/example\\.invalid/.test(a.value)
            && el.localName !== "a"))),
].map((el) => el.outerHTML)"""


def battle(visit: Any, arena_models: Any, answer: str, prompt: str = "Show me") -> None:
    """A round where both models give `answer`, so either pane shows it; waits for the votes."""
    for model in ("alpha-up", "beta-up"):
        arena_models.upstream.behaviours[model] = Behaviour(text=answer, chunk_delay=0.003)
    visit.goto("/")
    visit.page.fill("#prompt", prompt)
    visit.page.keyboard.press("Control+Enter")
    visit.page.wait_for_function(VOTES_OPEN)


def watch(visit: Any) -> tuple[list[str], list[str]]:
    """Every request the page makes, and its console errors and uncaught exceptions."""
    requests: list[str] = []
    problems: list[str] = []
    visit.page.on("request", lambda r: requests.append(r.url))
    visit.page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    visit.page.on("pageerror", lambda e: problems.append(str(e)))
    return requests, problems


def test_an_answer_renders_tables_code_math_lists_quotes_and_links(
    chromium: OpenPage, arena_models: Any
) -> None:
    visit = chromium()
    requests, problems = watch(visit)
    battle(visit, arena_models, RICH)
    body = visit.page.locator(".pane[data-side=a] .answer__body")

    assert body.locator("h2").inner_text() == "Results"
    assert body.locator("table th").all_inner_texts() == ["Model", "Score", "Notes"]
    assert body.locator("table tbody tr").count() == 2
    score = body.locator("table tbody tr:first-child td:nth-child(2)")
    assert score.get_attribute("style") == "text-align:right"
    assert body.locator("td em").inner_text() == "good"
    assert body.locator("td s").inner_text() == "bad"

    assert body.locator(".md-code__lang").inner_text() == "python"
    code = body.locator(".md-code pre code")
    assert code.inner_text() == "def add(a, b):\n    return a + b\n"
    assert code.locator(".hljs-keyword").all_inner_texts() == ["def", "return"]

    # Math: KaTeX's HTML, and MathML carrying the TeX for screen readers and copying.
    assert body.locator(".katex").count() == 2
    assert body.locator(".md-math").count() == 0  # every placeholder swapped for its formula
    assert body.locator(".katex-display").count() == 1
    assert body.locator(".katex-display math").count() == 1
    assert "\\frac{1}{3}" in (body.locator(".katex-display annotation").text_content() or "")
    assert "$" not in body.inner_text().replace("$$", "")

    assert body.locator("ol > li").count() == 2
    assert body.locator("ol > li > ul > li").all_inner_texts() == ["nested bold", "nested code"]
    assert body.locator("ol ul strong").inner_text() == "bold"
    assert body.locator("ol ul code").inner_text() == "code"
    link = body.locator("blockquote a")
    assert link.inner_text() == "link"
    assert link.get_attribute("href") == "https://example.org/docs"
    assert link.get_attribute("target") == "_blank"
    assert "noopener" in (link.get_attribute("rel") or "")

    # KaTeX's fonts and stylesheet came from this site; nothing else was asked for.
    assert any("/static/vendor/katex/fonts/" in url for url in requests), requests
    assert {urlsplit(url).hostname for url in requests if url.startswith("http")} == {"127.0.0.1"}
    assert problems == []


def test_the_copy_button_copies_the_code_and_says_so(chromium: OpenPage, arena_models: Any) -> None:
    visit = chromium()
    visit.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=visit.base_url)
    battle(visit, arena_models, "Run:\n\n```bash\nls -la /tmp\necho done\n```\n")
    pane = visit.page.locator(".pane[data-side=b]")
    button = pane.get_by_role("button", name="Copy the bash code")
    button.click()
    visit.page.wait_for_function(
        "() => document.querySelector('.pane[data-side=b] .md-code__copy').textContent === 'Copied'"
    )
    assert visit.page.evaluate("navigator.clipboard.readText()") == "ls -la /tmp\necho done"


def test_an_answer_cannot_run_script_or_load_anything_from_elsewhere(
    chromium: OpenPage, arena_models: Any
) -> None:
    visit = chromium()
    requests, problems = watch(visit)
    prompt = "<script>window.__xss='prompt'</script><img src=x onerror=\"window.__xss='prompt img'\">"
    battle(visit, arena_models, XSS, prompt=prompt)
    visit.page.wait_for_timeout(300)  # time for an image error or an onload to fire, were there one

    assert visit.page.evaluate("window.__xss") is None
    for side in "ab":
        pane = visit.page.locator(f".pane[data-side={side}]")
        assert pane.locator(".answer__body").evaluate(DANGEROUS) == []
        assert pane.locator(".turn__prompt").evaluate(DANGEROUS) == []
        # What the model wrote as HTML is shown as text, and so is the prompt.
        text = pane.locator(".answer__body").inner_text()
        assert '<script>window.__xss = "script"</script>' in text
        assert "<iframe" in text
        assert pane.locator(".turn__prompt-text").inner_text() == prompt
        # A javascript: link is not a link; the remote image is a link to its address, not loaded
        # (the addresses quoted in the HTML shown as text are links too: a click away, not fetched).
        hrefs = pane.locator(".answer__body a").evaluate_all("links => links.map(a => a.href)")
        assert "http://example.invalid/x.png" in hrefs
        assert all(href.startswith("http://example.invalid/") for href in hrefs), hrefs
        assert pane.locator(".md-image").inner_text() == "Image: a remote picture"
    # Nothing left this machine, and nothing was even tried and refused by the page's policy.
    assert {urlsplit(url).hostname for url in requests if url.startswith("http")} == {"127.0.0.1"}
    assert problems == []


def test_the_sanitiser_alone_strips_what_markdown_it_would_never_produce(
    chromium: OpenPage, arena_models: Any
) -> None:
    # The second layer, tried with raw HTML: were markdown-it ever to let HTML through, this holds.
    visit = chromium()
    requests, _ = watch(visit)
    errors: list[str] = []
    visit.page.on("pageerror", lambda e: errors.append(str(e)))
    visit.goto("/")
    dirty = (
        "<script>window.__xss='script'</script>"
        "<img src=x onerror=\"window.__xss='img'\">"
        "<img src='http://example.invalid/a.png'>"
        "<a href=\"javascript:window.__xss='a'\">a</a>"
        "<svg><script>window.__xss='svg'</script><image href='http://example.invalid/b.png'/>"
        "<use href='http://example.invalid/c.svg#x'/><a href='#ok'><path d='M0 0'/></a></svg>"
        "<math><mtext><table><mglyph><style><img src=x onerror=\"window.__xss='mxss'\">"
        "</style></mglyph></table></mtext></math>"
        "<p style='background:url(http://example.invalid/d.png)'>p</p>"
        "<p style='background:u\\72l(http://example.invalid/e.png)'>q</p>"
        "<span style='color:red'>kept</span>"
        "<iframe src='http://example.invalid/f'></iframe>"
        "<a href='https://example.org/'>fine</a>"
    )
    html = visit.page.evaluate(
        """(dirty) => {
          const box = document.createElement("div");
          box.append(window.arenaRender.sanitize(dirty));
          document.body.append(box);
          return box.innerHTML;
        }""",
        dirty,
    )
    visit.page.wait_for_timeout(300)
    assert visit.page.evaluate("window.__xss") is None
    for bad in ("<script", "<img", "<image", "<use", "<iframe", "onerror", "javascript:", "invalid", "url("):
        assert bad not in html, (bad, html)
    assert '<span style="color:red">kept</span>' in html
    rel = "noopener noreferrer nofollow ugc"
    assert f'<a href="https://example.org/" target="_blank" rel="{rel}">fine</a>' in html
    assert {urlsplit(url).hostname for url in requests if url.startswith("http")} == {"127.0.0.1"}
    # Not the console: Chromium reports the page's policy "refusing" the onerror handler as soon as
    # DOMPurify parses the dirty HTML into its inert document, though nothing there ever runs.
    assert errors == []


def test_a_streaming_answer_rebuilds_only_its_tail_and_an_open_code_fence_shows_as_code(
    chromium: OpenPage, arena_models: Any
) -> None:
    visit = chromium()
    visit.goto("/")
    result = visit.page.evaluate(
        """() => {
          const box = document.createElement("div");
          window.arenaRender.answer(box, "First paragraph.\\n\\nSecond");
          const first = box.firstElementChild;
          window.arenaRender.answer(box, "First paragraph.\\n\\nSecond, longer.\\n\\n```js\\nconst x = 1;");
          return {
            kept: box.firstElementChild === first,
            paragraphs: [...box.querySelectorAll("p")].map((p) => p.textContent),
            lang: box.querySelector(".md-code__lang")?.textContent,
            code: box.querySelector(".md-code code")?.textContent,
          };
        }"""
    )
    assert result == {
        "kept": True,
        "paragraphs": ["First paragraph.", "Second, longer."],
        "lang": "js",
        "code": "const x = 1;",
    }

    # A whole battle whose answers end inside a fence: the code is shown as code, not as text.
    battle(visit, arena_models, "Here it is:\n\n```sql\nSELECT 1;\n")
    pane = visit.page.locator(".pane[data-side=a]")
    assert pane.locator(".md-code__lang").inner_text() == "sql"
    assert pane.locator(".md-code code").inner_text() == "SELECT 1;"


def test_a_long_prompt_is_folded_in_both_panes_and_unfolds(chromium: OpenPage, arena_models: Any) -> None:
    visit = chromium()
    prompt = "\n".join(f"Line {n} of a long pasted document." for n in range(1, 41))
    battle(visit, arena_models, "Noted.", prompt=prompt)
    for side in "ab":
        shown = visit.page.locator(f".pane[data-side={side}] .turn__prompt-text")
        assert "is-folded" in (shown.get_attribute("class") or "")
        assert shown.evaluate("el => el.clientHeight < el.scrollHeight")
    pane = visit.page.locator(".pane[data-side=a]")
    toggle = pane.get_by_role("button", name=f"Show the whole prompt ({len(prompt):,} characters)")
    assert toggle.get_attribute("aria-expanded") == "false"
    toggle.click()
    shown = pane.locator(".turn__prompt-text")
    assert "is-folded" not in (shown.get_attribute("class") or "")
    assert shown.evaluate("el => el.clientHeight >= el.scrollHeight")
    assert pane.get_by_role("button", name="Show less").get_attribute("aria-expanded") == "true"
    assert shown.inner_text() == prompt


def test_a_prompt_over_the_limit_is_kept_whole_counted_and_not_sent(
    chromium: OpenPage, arena_models: Any, orm: Orm
) -> None:
    visit = chromium()
    requests, _ = watch(visit)
    visit.goto("/")
    limit = int(visit.page.get_attribute("#arena", "data-prompt-max"))
    assert limit == 16_000
    assert visit.page.inner_text("#prompt-count") == "0 / 16,000"

    # Typed in as a paste would be: a textarea's maxlength would cut it here, without a word.
    visit.page.focus("#prompt")
    visit.page.keyboard.insert_text("x" * 20_000)
    assert visit.page.evaluate("document.querySelector('#prompt').value.length") == 20_000
    assert visit.page.inner_text("#prompt-count") == "20,000 / 16,000"
    assert visit.page.inner_text("#prompt-too-long") == "Too long to send: the limit is 16,000 characters."
    assert visit.page.get_attribute("#prompt", "aria-invalid") == "true"

    visit.page.click("#send")
    assert visit.page.inner_text("#composer-error") == (
        "Your prompt is 20,000 characters long; the limit is 16,000. Shorten it to send it."
    )
    assert not [url for url in requests if "/api/v1/battles/" in url]
    assert orm(lambda: Battle.objects.count()) == 0

    # Cut to the limit by the visitor: the message goes, and the whole prompt is sent and shown.
    visit.page.keyboard.press("Control+a")
    visit.page.keyboard.insert_text("y" * 16_000)
    assert visit.page.inner_text("#prompt-count") == "16,000 / 16,000"
    assert visit.page.is_hidden("#prompt-too-long")
    assert visit.page.get_attribute("#prompt", "aria-invalid") == "false"
    visit.page.click("#send")
    visit.page.wait_for_function(VOTES_OPEN)
    assert orm(lambda: len(Battle.objects.get().turns.get().prompt)) == 16_000
    for side in "ab":
        assert len(visit.page.inner_text(f".pane[data-side={side}] .turn__prompt-text")) == 16_000
    assert visit.page.inner_text("#prompt-count") == "0 / 16,000"


def test_without_the_libraries_answers_and_prompts_are_plain_text(
    chromium: OpenPage, arena_models: Any
) -> None:
    visit = chromium()
    visit.page.route("**/static/vendor/**", lambda route: route.abort())
    battle(visit, arena_models, "**Bold** <b>not</b>\nsecond line", prompt="<i>Asked</i>")
    body = visit.page.locator(".pane[data-side=a] .answer__body")
    assert body.inner_text() == "**Bold** <b>not</b>\nsecond line"
    assert body.locator("*").count() == 0
    assert visit.page.inner_text(".pane[data-side=a] .turn__prompt-text") == "<i>Asked</i>"
