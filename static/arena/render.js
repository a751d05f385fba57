// How answers and prompts look on the battle pages. battle.js calls window.arenaRender.
//
// An answer is Markdown: markdown-it (CommonMark, GFM tables and strikethrough) with TeX math by
// KaTeX (markdown-it-texmath) and code coloured by highlight.js; all from static/vendor/. Safety
// is in two layers: markdown-it never parses HTML written in an answer (it stays visible text)
// and refuses javascript:, vbscript:, file: and data: links; then DOMPurify sanitises the HTML
// markdown-it and KaTeX made, with hooks that drop anything able to fetch from elsewhere
// (images, style urls, SVG hrefs). Images are never loaded: an answer's image becomes a link to
// its address. A prompt is plain text, never Markdown.
"use strict";

window.arenaRender = (() => {
  const { markdownit, texmath, katex, hljs, DOMPurify } = window;

  // --- caches: while an answer streams it is re-rendered whole, and only its tail changes ---------

  function cached(size, compute) {
    const cache = new Map();
    return (key, ...args) => {
      let value = cache.get(key);
      if (value === undefined) {
        if (cache.size >= size) cache.clear();
        value = compute(...args);
        cache.set(key, value);
      }
      return value;
    };
  }

  const KATEX_OPTIONS = {
    throwOnError: false, // a formula with a mistake shows the mistake in red, not nothing
    trust: false, // no \href, \url, \includegraphics or \htmlClass from an answer
    strict: "ignore",
    maxSize: 50,
    maxExpand: 500,
    output: "htmlAndMathml", // the MathML copy is what screen readers read
  };
  const tex = cached(500, (source, displayMode) =>
    katex.renderToString(source, { ...KATEX_OPTIONS, displayMode }),
  );
  const mathEngine = {
    renderToString: (source, options) => tex(`${options.displayMode ? "D" : "I"}${source}`, source, options.displayMode),
  };

  const highlight = cached(200, (code, language) => hljs.highlight(code, { language, ignoreIllegals: true }).value);

  // --- markdown-it -------------------------------------------------------------------------------

  const md = markdownit({
    html: false, // HTML in an answer is shown as written, never made into elements
    linkify: true,
    breaks: true, // models write poems, addresses and steps line by line
    typographer: false,
    highlight(code, info) {
      const language = info.trim().split(/\s+/)[0].toLowerCase();
      if (!language || !hljs.getLanguage(language)) return ""; // markdown-it escapes it as plain text
      return highlight(`${language}\n${code}`, code, language);
    },
  });
  md.use(texmath, { engine: mathEngine, delimiters: ["dollars", "brackets"], katexOptions: KATEX_OPTIONS });

  // An image is shown as a link to where it lives: loading it would tell that host who is reading.
  md.renderer.rules.image = (tokens, idx) => {
    const token = tokens[idx];
    const alt = token.children ? md.renderer.renderInlineAsText(token.children, md.options, {}) : "";
    const label = md.utils.escapeHtml(`Image: ${alt || "untitled"}`);
    const src = md.utils.escapeHtml(token.attrGet("src") || "");
    return `<a class="md-image" href="${src}" title="Not loaded here: opens where it lives">${label}</a>`;
  };

  // --- DOMPurify ---------------------------------------------------------------------------------

  const purify = DOMPurify(window); // a private instance: its hooks apply to answers only
  const SANITIZE = {
    RETURN_DOM_FRAGMENT: true,
    USE_PROFILES: { html: true, mathMl: true, svg: true }, // KaTeX draws roots and arrows in SVG
    // KaTeX's MathML keeps the TeX in <semantics><annotation>: text only, unlike annotation-xml.
    ADD_TAGS: ["semantics", "annotation"],
    FORBID_TAGS: ["img", "image", "picture", "source", "video", "audio", "track", "iframe", "object",
      "embed", "link", "style", "use", "form", "input", "button", "textarea", "select", "foreignobject"],
    FORBID_ATTR: ["srcset", "background", "poster", "formaction", "xlink:href", "ping"],
  };
  // A style that names a url (or hides one behind a CSS escape) could fetch from another host.
  const UNSAFE_STYLE = /url\s*\(|image-set|image\s*\(|@import|expression|\\/i;
  purify.addHook("uponSanitizeAttribute", (node, data) => {
    if (data.attrName === "style" && UNSAFE_STYLE.test(data.attrValue)) data.keepAttr = false;
    // SVG may only point inside itself (#id); an href on anything but a link goes.
    if ((data.attrName === "href" || data.attrName === "src") && node.nodeName.toLowerCase() !== "a") {
      data.keepAttr = data.attrValue.startsWith("#");
    }
  });
  purify.addHook("afterSanitizeAttributes", (node) => {
    if (node.nodeName.toLowerCase() === "a" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow ugc");
    }
  });

  /** Sanitised nodes for `html`: the second layer, also used on its own by the tests. */
  function sanitize(html) {
    return purify.sanitize(html, SANITIZE);
  }

  // --- answers -----------------------------------------------------------------------------------

  const keys = new WeakMap(); // top-level node → the sanitised HTML it was made from

  /**
   * Render Markdown `text` into `container`. Blocks that did not change since the last call stay
   * the same nodes, so while an answer streams only its tail is rebuilt, and a selection or a
   * "Copied" label in an earlier block survives.
   */
  function answer(container, text) {
    const fresh = [...sanitize(md.render(text)).childNodes];
    const old = [...container.childNodes];
    let same = 0;
    while (same < fresh.length && same < old.length && keys.get(old[same]) === keyOf(fresh[same])) same++;
    for (const node of old.slice(same)) node.remove();
    for (const node of fresh.slice(same)) {
      const key = keyOf(node);
      const shown = decorate(node);
      keys.set(shown, key);
      container.append(shown);
    }
  }

  function keyOf(node) {
    return node.nodeType === Node.ELEMENT_NODE ? node.outerHTML : node.textContent;
  }

  // Code blocks get a bar with their language and a copy button; tables a frame that scrolls.
  function decorate(node) {
    if (node.nodeType !== Node.ELEMENT_NODE) return node;
    const holder = el("div");
    holder.append(node); // so that `node` itself can be wrapped
    for (const pre of holder.querySelectorAll("pre")) {
      const code = pre.querySelector("code");
      if (!code) continue;
      const language = (code.className.match(/(?:^|\s)language-(\S+)/) || [])[1] || "";
      const copy = el("button", "md-code__copy", "Copy");
      copy.type = "button";
      copy.setAttribute("aria-label", language ? `Copy the ${language} code` : "Copy the code");
      const bar = el("div", "md-code__bar");
      bar.append(el("span", "md-code__lang", language || "text"), copy);
      const frame = el("div", "md-code");
      pre.replaceWith(frame);
      frame.append(bar, pre);
    }
    for (const table of holder.querySelectorAll("table")) {
      const frame = el("div", "md-table");
      table.replaceWith(frame);
      frame.append(table);
    }
    return holder.firstChild;
  }

  // One listener for every copy button, present and future.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest && event.target.closest(".md-code__copy");
    if (!button) return;
    const code = button.closest(".md-code").querySelector("pre code");
    const ok = await copyText(code ? code.textContent.replace(/\n$/, "") : "");
    button.textContent = ok ? "Copied" : "Copy failed";
    button.classList.toggle("is-done", ok);
    clearTimeout(button.arenaTimer);
    button.arenaTimer = setTimeout(() => {
      button.textContent = "Copy";
      button.classList.remove("is-done");
    }, 2000);
  });

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // No asynchronous clipboard (a plain-http deployment): the older, synchronous way.
      const area = el("textarea", "md-copy-buffer");
      area.value = text;
      area.setAttribute("readonly", "");
      document.body.append(area);
      area.select();
      let ok = false;
      try {
        ok = document.execCommand("copy");
      } catch {
        ok = false;
      }
      area.remove();
      return ok;
    }
  }

  // --- prompts -----------------------------------------------------------------------------------

  // A long prompt is shown in both panes; past this it is folded, with a button to unfold it.
  const FOLD_CHARS = 600;
  const FOLD_LINES = 8;

  /** The visitor's prompt as plain text, folded when long. */
  function prompt(text) {
    const fragment = document.createDocumentFragment();
    const body = el("p", "turn__prompt-text", text);
    fragment.append(body);
    const lines = text.split("\n").length;
    if (text.length <= FOLD_CHARS && lines <= FOLD_LINES) return fragment;
    body.classList.add("is-folded");
    const toggle = el("button", "turn__unfold", "");
    toggle.type = "button";
    const size = `${text.length.toLocaleString("en")} characters`;
    const show = (folded) => {
      body.classList.toggle("is-folded", folded);
      toggle.textContent = folded ? `Show the whole prompt (${size})` : "Show less";
      toggle.setAttribute("aria-expanded", String(!folded));
    };
    toggle.addEventListener("click", () => show(!body.classList.contains("is-folded")));
    show(true);
    fragment.append(toggle);
    return fragment;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  return { answer, prompt, sanitize };
})();
