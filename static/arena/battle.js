// The battle pages (anonymous at /, named at /named/): send a prompt, stream both answers over
// one EventSource, vote, reveal. Plain DOM, no framework. Answers and prompts are shown by
// static/arena/render.js, which sanitises every answer; nothing here parses model output as HTML.
"use strict";

(() => {
  const root = document.getElementById("arena");
  if (!root) return;

  const MODE = root.dataset.mode === "named" ? "named" : "anonymous";
  const API = "/api/v1/battles/";
  const $ = (selector) => root.querySelector(selector);

  const form = $("#composer");
  const prompt = $("#prompt");
  const send = $("#send");
  const promptLabel = form.querySelector('[data-role="prompt-label"]');
  const formError = $("#composer-error");
  const voteBox = $("#vote");
  const voteNote = $("#vote-note");
  const voteButtons = [...root.querySelectorAll("[data-winner]")];
  const newRound = $("#new-round");
  const pickers = [...root.querySelectorAll(".picker select")];
  const consent = $("#consent");
  const consentAccept = $("#consent-accept");
  const consentError = $("#consent-error");

  const panes = {};
  for (const el of root.querySelectorAll(".pane")) {
    const part = (role) => el.querySelector(`[data-role="${role}"]`);
    panes[el.dataset.side] = {
      el,
      name: part("name"),
      status: part("status"),
      log: part("log"),
      empty: part("empty"),
      reveal: part("reveal"),
      answer: null, // the answer being streamed: {el, body, text, state}
    };
  }
  const SIDES = ["a", "b"];

  // One round: null before the first send and after "New round".
  let battle = null; // {id, state: "streaming" | "ready" | "failed" | "voted"}
  let source = null;
  // The prompt stays disabled until the visitor accepts the terms in force (the page says if they have).
  let consented = !consent || consent.hidden;

  if (/Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent)) {
    const mod = form.querySelector('[data-role="mod"]');
    if (mod) mod.textContent = "⌘";
  }

  // --- talking to the API -----------------------------------------------------------------------

  async function post(path, body) {
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch {
      throw new Error("Could not reach the server. Check your connection and try again.");
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const error = new Error(reason(data, response.status));
      error.code = data && data.code;
      throw error;
    }
    return data;
  }

  // --- consent ----------------------------------------------------------------------------------

  if (consentAccept) {
    consentAccept.addEventListener("click", async () => {
      consentAccept.disabled = true;
      consentError.hidden = true;
      try {
        await post("/api/v1/visitor/consent", { terms_version: consent.dataset.termsVersion });
      } catch (error) {
        consentAccept.disabled = false;
        consentError.textContent = error.message;
        consentError.hidden = false;
        return;
      }
      consented = true;
      consent.hidden = true;
      setComposerBusy(false);
      prompt.focus();
    });
  }

  function askConsent() {
    consented = false;
    consent.hidden = false;
    consentAccept.disabled = false;
    consentAccept.focus();
  }

  function reason(data, status) {
    if (data && typeof data.detail === "string") {
      const first = data.errors ? firstMessage(data.errors) : "";
      return first ? `${data.detail} ${first}` : data.detail;
    }
    if (status === 429) return "Too many requests. Wait a moment and try again.";
    return `The server could not handle that (HTTP ${status}). Try again in a moment.`;
  }

  function firstMessage(errors) {
    if (typeof errors === "string") return errors;
    for (const value of Object.values(errors || {})) {
      const found = Array.isArray(value) ? firstMessage(value[0]) : firstMessage(value);
      if (found) return found;
    }
    return "";
  }

  // --- sending a prompt -------------------------------------------------------------------------

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });

  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submit();
    }
  });

  prompt.addEventListener("input", () => showFormError(""));

  // --- the prompt's length ----------------------------------------------------------------------
  // The server refuses a prompt over its limit; the page says so as the visitor types or pastes,
  // and never cuts a prompt short. Counted in code points, as the server counts.

  const PROMPT_MAX = Number(root.dataset.promptMax) || 0;
  const promptCount = $("#prompt-count");
  const promptTooLong = $("#prompt-too-long");
  const number = (n) => n.toLocaleString("en");

  function promptLength(text) {
    let length = 0;
    for (const _ of text) length++;
    return length;
  }

  function tooLong(text) {
    const length = promptLength(text);
    if (!PROMPT_MAX || length <= PROMPT_MAX) return "";
    const limit = number(PROMPT_MAX);
    return `Your prompt is ${number(length)} characters long; the limit is ${limit}. Shorten it to send it.`;
  }

  function countPrompt() {
    if (!PROMPT_MAX || !promptCount) return;
    const length = promptLength(prompt.value);
    const over = length > PROMPT_MAX;
    promptCount.textContent = `${number(length)} / ${number(PROMPT_MAX)}`;
    promptCount.classList.toggle("is-over", over);
    prompt.setAttribute("aria-invalid", String(over));
    // Said once when the prompt goes over, not at every key: the text stays the same while over.
    const message = over ? `Too long to send: the limit is ${number(PROMPT_MAX)} characters.` : "";
    if (promptTooLong.textContent !== message) promptTooLong.textContent = message;
  }

  prompt.addEventListener("input", countPrompt);
  countPrompt();

  async function submit() {
    if (send.disabled) return;
    const text = prompt.value;
    if (!text.trim()) {
      showFormError("Type a question first.");
      prompt.focus();
      return;
    }
    if (tooLong(text)) {
      showFormError(tooLong(text));
      prompt.focus();
      return;
    }
    let body;
    let path;
    if (battle) {
      path = `${API}${battle.id}/turns/`;
      body = { prompt: text };
    } else {
      path = API;
      body = { prompt: text, mode: MODE };
      if (MODE === "named") {
        const [a, b] = pickers.map((select) => select.value);
        if (!a || !b) return showFormError("Pick a model for both sides.");
        if (a === b) return showFormError("Pick two different models.");
        body.model_a = a;
        body.model_b = b;
      }
    }

    setComposerBusy(true);
    showFormError("");
    let data;
    try {
      data = battle ? await post(path, body) : await openBattle(body);
    } catch (error) {
      if (error.code === "consent_required" && consent) askConsent();
      setComposerBusy(false);
      showFormError(error.message);
      return;
    }
    if (!battle) startRound(data);
    prompt.value = "";
    addTurn(text);
    openStream();
  }

  // A new battle carries a solved proof-of-work (static/arena/pow.js), solved while the person typed,
  // or the token of the vendor's bot check when the page shows one (static/arena/captcha.js).
  // A challenge refused (expired, used, too easy for the visitor's volume) is solved anew once.
  async function openBattle(body) {
    const check = window.arenaCaptcha || window.arenaPow;
    for (let attempt = 0; ; attempt++) {
      setComposerBusy(true, "Checking…");
      const challenge = check ? await check.take() : null;
      setComposerBusy(true);
      try {
        return await post(API, challenge ? { ...body, challenge } : body);
      } catch (error) {
        if (attempt > 0 || !String(error.code || "").startsWith("challenge_")) throw error;
      } finally {
        if (check) check.refresh();
      }
    }
  }

  function startRound(data) {
    battle = { id: data.id, state: "streaming" };
    newRound.hidden = false;
    for (const select of pickers) select.disabled = true;
    // Named battles name their models from the start; anonymous ones get null here.
    for (const side of SIDES) {
      const model = data[`model_${side}`];
      if (model) panes[side].name.textContent = ` · ${model.label}`;
    }
  }

  function addTurn(text) {
    battle.state = "streaming";
    for (const side of SIDES) {
      const pane = panes[side];
      pane.empty.hidden = true;
      const turn = el("div", "turn");
      const asked = el("div", "turn__prompt");
      asked.append(el("span", "turn__who", "You"), promptNode(text));
      const answer = el("div", "answer");
      const body = el("div", "answer__body");
      answer.append(body);
      turn.append(asked, answer);
      pane.log.append(turn);
      pane.log.setAttribute("aria-busy", "true");
      pane.answer = { el: answer, body, text: "", state: "waiting", frame: 0 };
      setStatus(pane, "waiting");
    }
    setVotes(false);
    voteBox.hidden = false;
    voteNote.textContent = "Voting opens when both answers have finished.";
    voteNote.classList.remove("is-error");
    form.hidden = false;
    setComposerBusy(true, "Answering…");
  }

  // --- streaming --------------------------------------------------------------------------------

  function openStream() {
    const stream = new EventSource(`${API}${battle.id}/stream`);
    source = stream;
    stream.onmessage = (message) => {
      if (source !== stream) return;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      handle(event);
    };
    // EventSource reconnects on its own after an error; a battle stream must not be asked for
    // twice, so an error before "end" closes it and ends the round here.
    stream.onerror = () => {
      if (source !== stream) return;
      closeStream();
      broken();
    };
  }

  function closeStream() {
    if (source) source.close();
    source = null;
  }

  function handle(event) {
    if (event.type === "end") {
      closeStream();
      finish(event.state === "ready");
      return;
    }
    const pane = panes[event.side];
    if (!pane || !pane.answer) return;
    const answer = pane.answer;
    if (event.type === "delta") {
      answer.text += event.text || "";
      if (answer.state === "waiting") setStatus(pane, "streaming");
      answer.state = "streaming";
      scheduleRender(answer);
    } else if (event.type === "done") {
      answer.state = "done";
      setStatus(pane, "done");
      endAnswer(pane);
    } else if (event.type === "error") {
      fail(pane, event.text || "This answer failed.");
    }
  }

  function fail(pane, message) {
    const answer = pane.answer;
    answer.state = "error";
    setStatus(pane, "error");
    const box = el("div", "answer__error");
    box.setAttribute("role", "alert");
    box.append(el("strong", "", "This answer failed. "), document.createTextNode(message));
    answer.el.append(box);
    endAnswer(pane);
  }

  function endAnswer(pane) {
    renderNow(pane.answer);
    pane.log.setAttribute("aria-busy", "false");
  }

  function broken() {
    for (const side of SIDES) {
      const pane = panes[side];
      if (pane.answer && (pane.answer.state === "waiting" || pane.answer.state === "streaming")) {
        fail(pane, "The connection to the server was lost before this answer finished.");
      }
    }
    finish(false);
  }

  function finish(ok) {
    for (const side of SIDES) {
      const pane = panes[side];
      if (pane.answer && pane.answer.state !== "error" && pane.answer.state !== "done") {
        pane.answer.state = "done";
        setStatus(pane, "done");
        endAnswer(pane);
      }
    }
    battle.state = ok ? "ready" : "failed";
    setVotes(ok);
    if (ok) {
      voteNote.textContent = "Both answers are in. Which one is better?";
      voteNote.classList.remove("is-error");
      promptLabel.textContent = "Ask a follow-up — both models see the conversation so far";
      prompt.placeholder = "Ask a follow-up…";
      setComposerBusy(false);
    } else {
      const failed = SIDES.filter((s) => panes[s].answer && panes[s].answer.state === "error");
      const what =
        failed.length === 1
          ? `Model ${failed[0].toUpperCase()}’s answer did not complete`
          : "Neither answer completed";
      voteNote.textContent = `${what}, so this round can’t be voted on. Start a new round to try again.`;
      voteNote.classList.add("is-error");
      form.hidden = true;
      newRound.focus();
    }
  }

  // --- voting -----------------------------------------------------------------------------------

  for (const button of voteButtons) {
    button.addEventListener("click", () => vote(button.dataset.winner, button));
  }

  async function vote(winner, button) {
    if (!battle || battle.state !== "ready") return;
    setVotes(false);
    voteNote.textContent = "Sending your vote…";
    voteNote.classList.remove("is-error");
    let data;
    try {
      data = await post(`${API}${battle.id}/vote/`, { winner });
    } catch (error) {
      voteNote.textContent = error.message;
      voteNote.classList.add("is-error");
      setVotes(true);
      return;
    }
    battle.state = "voted";
    button.setAttribute("aria-pressed", "true");
    form.hidden = true;
    reveal(data);
  }

  const VERDICT = { a: "A is better", b: "B is better", tie: "Tie", bothbad: "Both are bad" };

  function reveal(data) {
    const winner = data.winner;
    root.classList.add("is-revealed");
    const names = {};
    for (const side of SIDES) {
      const pane = panes[side];
      const model = data[`model_${side}`] || {};
      names[side] = model.label || "an unnamed model";
      pane.el.classList.toggle("is-winner", winner === side);
      pane.el.classList.toggle("is-loser", winner === "a" || winner === "b" ? winner !== side : false);
      pane.reveal.replaceChildren();
      const who = el("div", "reveal__who");
      who.append(el("span", "reveal__label", names[side]));
      if (model.organization) who.append(el("span", "reveal__org", model.organization));
      pane.reveal.append(who);
      const badge = badgeFor(winner, side);
      if (badge) pane.reveal.append(el("span", `reveal__badge reveal__badge--${badge.kind}`, badge.text));
      pane.reveal.hidden = false;
    }
    voteNote.classList.remove("is-error");
    voteNote.textContent =
      `You voted “${VERDICT[winner] || winner}”. Model A was ${names.a}; model B was ${names.b}. ` +
      "Thanks — start a new round whenever you like.";
    newRound.classList.add("btn--primary");
    newRound.focus();
  }

  function badgeFor(winner, side) {
    if (winner === side) return { kind: "win", text: "Your pick" };
    if (winner === "tie") return { kind: "tie", text: "Tie" };
    if (winner === "bothbad") return { kind: "bad", text: "Both bad" };
    return null;
  }

  function setVotes(enabled) {
    for (const button of voteButtons) button.disabled = !enabled;
  }

  // --- a new round ------------------------------------------------------------------------------

  newRound.addEventListener("click", reset);

  function reset() {
    closeStream();
    battle = null;
    root.classList.remove("is-revealed");
    for (const side of SIDES) {
      const pane = panes[side];
      if (pane.answer) cancelAnimationFrame(pane.answer.frame);
      pane.answer = null;
      pane.log.replaceChildren(pane.empty);
      pane.log.setAttribute("aria-busy", "false");
      pane.empty.hidden = false;
      pane.name.textContent = "";
      pane.reveal.replaceChildren();
      pane.reveal.hidden = true;
      pane.el.classList.remove("is-winner", "is-loser");
      setStatus(pane, null);
    }
    for (const button of voteButtons) button.removeAttribute("aria-pressed");
    setVotes(false);
    voteBox.hidden = true;
    voteNote.textContent = "";
    voteNote.classList.remove("is-error");
    for (const select of pickers) select.disabled = false;
    newRound.hidden = true;
    newRound.classList.remove("btn--primary");
    form.hidden = false;
    promptLabel.textContent = "Your question";
    prompt.placeholder = "Ask both models anything…";
    prompt.value = "";
    showFormError("");
    setComposerBusy(false);
    prompt.focus();
  }

  // --- small helpers ----------------------------------------------------------------------------

  const STATUS = {
    waiting: "Waiting…",
    streaming: "Streaming…",
    done: "Done",
    error: "Failed",
  };

  function setStatus(pane, state) {
    pane.status.hidden = !state;
    pane.status.textContent = state ? STATUS[state] : "";
    pane.status.dataset.state = state || "";
  }

  function setComposerBusy(busy, label) {
    prompt.disabled = busy || !consented;
    send.disabled = busy || !consented;
    send.textContent = busy ? label || "Sending…" : "Send";
    countPrompt(); // the prompt may have been emptied (sent, new round)
  }

  function showFormError(message) {
    formError.textContent = message;
    formError.hidden = !message;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // --- rendering answers (static/arena/render.js) ------------------------------------------------
  // Re-rendered at most once per frame while streaming; render.js keeps the blocks that did not change.

  function scheduleRender(answer) {
    if (answer.frame) return;
    answer.frame = requestAnimationFrame(() => {
      answer.frame = 0;
      render(answer.body, answer.text);
    });
  }

  function renderNow(answer) {
    if (answer.frame) cancelAnimationFrame(answer.frame);
    answer.frame = 0;
    render(answer.body, answer.text);
  }

  // Without render.js (a library that failed to load) answers and prompts are shown as plain text.
  function render(container, text) {
    if (window.arenaRender) return window.arenaRender.answer(container, text);
    container.classList.add("is-plain");
    container.textContent = text;
  }

  function promptNode(text) {
    return window.arenaRender ? window.arenaRender.prompt(text) : el("p", "turn__prompt-text", text);
  }
})();
