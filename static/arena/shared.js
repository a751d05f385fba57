// A shared battle's page: each answer, written into the page as plain text, is drawn as Markdown
// by static/arena/render.js, which sanitises it. Without render.js it stays plain text.
"use strict";

(() => {
  if (!window.arenaRender) return;
  for (const body of document.querySelectorAll("[data-answer]")) {
    const text = body.textContent;
    body.classList.remove("is-plain");
    body.replaceChildren();
    window.arenaRender.answer(body, text);
  }
})();
