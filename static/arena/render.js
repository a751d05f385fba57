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
  // Strings through Django's catalogue (/jsi18n/, loaded before this file); English without it.
  const gettext = window.gettext || ((s) => s);
  const interpolate =
    window.interpolate || ((f, o) => f.replace(/%\((\w+)\)s/g, (_, k) => String(o[k])));
  const fmt = (text, values) => interpolate(text, values, true);
  const { markdownit, texmath, katex, hljs, DOMPurify } = window;

  // --- caches: a streaming answer's formulas and code are drawn again at every change of its tail -

  // The `size` most recently used results of `compute`.
  function cached(size, compute) {
    const cache = new Map();
    return (key, ...args) => {
      let value = cache.get(key);
      if (value === undefined) {
        value = compute(...args);
        if (cache.size >= size) cache.delete(cache.keys().next().value);
      } else {
        cache.delete(key);
      }
      cache.set(key, value);
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
  // A formula is drawn by KaTeX and sanitised once, then copied wherever it appears: KaTeX's
  // output is thousands of nodes, the bulk of the sanitiser's work were it sanitised every time.
  // markdown-it's HTML carries a placeholder naming the TeX; `decorate` swaps in the formula.
  const formula = cached(500, (source, displayMode) => {
    let html;
    try {
      html = katex.renderToString(source, { ...KATEX_OPTIONS, displayMode });
    } catch {
      // Mistakes in the TeX are drawn in red by KaTeX; anything else shows the TeX as written.
      html = `<code>${md.utils.escapeHtml(source)}</code>`;
    }
    return sanitize(html);
  });
  const mathEngine = {
    renderToString(source, options) {
      // `$` escaped too: texmath puts this into its template with String.replace.
      const tex = md.utils.escapeHtml(source).replaceAll("$", "&#36;");
      return `<span class="md-math" data-tex="${tex}" data-display="${options.displayMode ? 1 : 0}"></span>`;
    },
  };

  const highlight = cached(200, (code, language) => {
    try {
      return hljs.highlight(code, { language, ignoreIllegals: true }).value;
    } catch {
      return ""; // markdown-it then shows the code uncoloured
    }
  });

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
    const label = md.utils.escapeHtml(fmt(gettext("Image: %(alt)s"), { alt: alt || gettext("untitled") }));
    const src = md.utils.escapeHtml(token.attrGet("src") || "");
    const title = md.utils.escapeHtml(gettext("Not loaded here: opens where it lives"));
    return `<a class="md-image" href="${src}" title="${title}">${label}</a>`;
  };

  // --- DOMPurify ---------------------------------------------------------------------------------

  const purify = DOMPurify(window); // a private instance: its hooks apply to answers only
  const SANITIZE = {
    RETURN_DOM_FRAGMENT: true,
    USE_PROFILES: { html: true, mathMl: true, svg: true }, // KaTeX draws roots and arrows in SVG
    // KaTeX's MathML keeps the TeX in <semantics><annotation>: text only, unlike annotation-xml.
    ADD_TAGS: ["semantics", "annotation"],
    FORBID_TAGS: [
      ...["img", "image", "picture", "source", "video", "audio", "track", "iframe", "object", "embed"],
      ...["link", "style", "use", "form", "input", "button", "textarea", "select", "foreignobject"],
    ],
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

  purify.setConfig(SANITIZE); // once: given to each call, the configuration is parsed at every call

  /** Sanitised nodes for `html`: the second layer, also used on its own by the tests. */
  function sanitize(html) {
    return purify.sanitize(html);
  }

  // --- answers -----------------------------------------------------------------------------------

  // container → its blocks as shown: [{key, nodes}], one per top-level Markdown block.
  const shownBlocks = new WeakMap();

  /**
   * Render Markdown `text` into `container`. The text is parsed whole, but only blocks whose source
   * changed since the last call are rendered, sanitised and replaced: while an answer streams that
   * is its last block or two, and a selection or a "Copied" label in an earlier block survives.
   */
  function answer(container, text) {
    const env = {};
    const tokens = md.parse(text, env);
    const blocks = topLevelBlocks(tokens, text, env);
    const shown = shownBlocks.get(container) || [];
    let same = 0;
    while (same < blocks.length && same < shown.length && blocks[same].key === shown[same].key) same++;
    for (const block of shown.slice(same)) for (const node of block.nodes) node.remove();
    const next = shown.slice(0, same);
    const changed = blocks.slice(same);
    const html = changed.map((b) => md.renderer.render(tokens.slice(b.start, b.end), md.options, env));
    const parts = sanitizeEach(html);
    changed.forEach((block, i) => {
      const nodes = [...parts[i].childNodes].filter(isContent).map(decorate);
      container.append(...nodes);
      next.push({ key: block.key, nodes });
    });
    shownBlocks.set(container, next);
  }

  // One sanitiser pass for many blocks (each pass parses a document: a long answer shown at once,
  // as a battle restored, has hundreds of blocks), each block in a wrapper to find it again.
  function sanitizeEach(htmls) {
    if (htmls.length === 1) return [sanitize(htmls[0])];
    const all = sanitize(htmls.map((html) => `<div class="md-block">${html}</div>`).join(""));
    const wrappers = [...all.childNodes];
    const intact =
      wrappers.length === htmls.length &&
      wrappers.every((node) => node.nodeName === "DIV" && node.className === "md-block");
    return intact ? wrappers : htmls.map(sanitize);
  }

  // Each top-level block (a paragraph, a list, a table, a fence…) with a key that changes when
  // its source lines, or the link references every block may use, change.
  function topLevelBlocks(tokens, text, env) {
    const lines = text.split("\n");
    const references = env.references ? JSON.stringify(env.references) : "";
    const blocks = [];
    for (let start = 0; start < tokens.length; ) {
      let end = start;
      for (let depth = 0; end < tokens.length; end++) {
        depth += tokens[end].nesting;
        if (depth <= 0) break;
      }
      end++;
      const { map, type } = tokens[start];
      const source = map ? lines.slice(map[0], map[1]).join("\n") : JSON.stringify(tokens.slice(start, end));
      blocks.push({ start, end, key: `${type}\u0000${references}\u0000${source}` });
      start = end;
    }
    return blocks;
  }

  function isContent(node) {
    return node.nodeType === Node.ELEMENT_NODE || node.textContent.trim() !== "";
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
      const copy = el("button", "md-code__copy", gettext("Copy"));
      copy.type = "button";
      copy.setAttribute(
        "aria-label",
        language ? fmt(gettext("Copy the %(language)s code"), { language }) : gettext("Copy the code"),
      );
      const bar = el("div", "md-code__bar");
      bar.append(el("span", "md-code__lang", language || "text"), copy);
      const frame = el("div", "md-code");
      pre.replaceWith(frame);
      frame.append(bar, pre);
    }
    for (const math of holder.querySelectorAll(".md-math[data-tex]")) {
      const display = math.dataset.display === "1";
      const source = math.dataset.tex;
      math.replaceWith(formula(`${display ? "D" : "I"}${source}`, source, display).cloneNode(true));
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
    button.textContent = ok ? gettext("Copied") : gettext("Copy failed");
    button.classList.toggle("is-done", ok);
    clearTimeout(button.arenaTimer);
    button.arenaTimer = setTimeout(() => {
      button.textContent = gettext("Copy");
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
    // Code points, as counted when typed.
    const size = [...text].length.toLocaleString(document.documentElement.lang || "en");
    const show = (folded) => {
      body.classList.toggle("is-folded", folded);
      toggle.textContent = folded
        ? fmt(gettext("Show the whole prompt (%(size)s characters)"), { size })
        : gettext("Show less");
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
