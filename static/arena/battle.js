// The battle pages (anonymous at /, named at /named/, one battle at /b/<id>/) and the direct chat
// (/chat/: one named model in one pane, no vote): send a prompt, stream the answers over one EventSource, retry a side, ask both again, stop, vote, reveal. A battle keeps
// its own address: a reload, Back and a second tab read it back from the API. Plain DOM, no
// framework. Answers and prompts are shown by static/arena/render.js, which sanitises every answer;
// nothing here parses model output as HTML.
"use strict";

(() => {
  const root = document.getElementById("arena");
  if (!root) return;
  // Strings through Django's catalogue (/jsi18n/, loaded before this file); English without it.
  const gettext = window.gettext || ((s) => s);
  const ngettext = window.ngettext || ((s, p, n) => (n === 1 ? s : p));
  const interpolate =
    window.interpolate || ((f, o) => f.replace(/%\((\w+)\)s/g, (_, k) => String(o[k])));
  const fmt = (text, values) => interpolate(text, values, true);

  const HOMES = { anonymous: "/", named: "/named/", direct: "/chat/" };
  const MODE = Object.hasOwn(HOMES, root.dataset.mode) ? root.dataset.mode : "anonymous";
  const HOME = HOMES[MODE];
  const DIRECT = MODE === "direct"; // one pane, side A; nothing to vote on
  const API = "/api/v1/battles/";
  const $ = (selector) => root.querySelector(selector);

  const form = $("#composer");
  const prompt = $("#prompt");
  const send = $("#send");
  const promptLabel = form.querySelector('[data-role="prompt-label"]');
  const formError = $("#composer-error");
  const voteBox = $("#vote");
  const voteGroup = $("#vote-buttons");
  const voteNote = $("#vote-note");
  const voteButtons = [...root.querySelectorAll("[data-winner]")];
  const stopButton = $("#stop");
  const regenerateButton = $("#regenerate");
  const newRound = $("#new-round");
  const pickers = [...root.querySelectorAll(".picker select")];
  const consent = $("#consent");
  const consentAccept = $("#consent-accept");
  const consentError = $("#consent-error");
  const historyBox = $("#history");
  const historyList = $("#history-list");
  // The image control (static/arena/attach.js); absent, the page works without images.
  const attach = window.arenaAttach || { taken: () => null, clear() {}, show() {}, disable() {} };

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
      answer: null, // the latest turn's answer: {el, body, text, state, frame}
    };
  }
  const SIDES = Object.keys(panes); // the page's panes: "a" alone in a direct chat
  const REGENERATE = DIRECT ? gettext("Ask again") : gettext("Ask both again");
  const PLACEHOLDER = DIRECT ? gettext("Ask the model anything…") : gettext("Ask both models anything…");
  if (DIRECT) {
    // The vote bar stays for its Stop and Ask-again tools; a direct chat has no vote to cast.
    voteGroup.hidden = true;
    $("#vote-keys").hidden = true;
    if ($("#reasons")) $("#reasons").hidden = true;
    regenerateButton.textContent = REGENERATE;
    prompt.placeholder = PLACEHOLDER;
    newRound.textContent = gettext("New chat");
  }

  // One round: null before the first send and after "New round".
  let battle = null; // {id, state: "pending" | "streaming" | "ready" | "failed" | "voted"}
  let source = null;
  let lastPrompt = ""; // the round's latest prompt: "New round" offers it again
  let watching = 0; // timer of a battle streamed in another window, read again until it ends
  // The prompt stays disabled until the visitor accepts the terms in force (the page says if they have).
  let consented = !consent || consent.hidden;

  if (/Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent)) {
    const mod = form.querySelector('[data-role="mod"]');
    if (mod) mod.textContent = "⌘";
  }

  // --- talking to the API -----------------------------------------------------------------------

  async function call(method, path, body) {
    let response;
    try {
      const form = body instanceof FormData; // an image goes as multipart/form-data, its boundary set by fetch
      response = await fetch(path, {
        method,
        headers: form ? { Accept: "application/json" } : { "Content-Type": "application/json", Accept: "application/json" },
        body: body === undefined || form ? body : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch {
      throw new Error(gettext("Could not reach the server. Check your connection and try again."));
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
      error.status = response.status;
      throw error;
    }
    return data;
  }

  const post = (path, body) => call("POST", path, body || {});
  const get = (path) => call("GET", path);

  // Whatever calls the models again (a new battle, a retry, both asked again) carries a solved
  // proof-of-work (static/arena/pow.js), solved while the person read, or the token of the vendor's
  // bot check when the page shows one (static/arena/captcha.js). A challenge refused (expired,
  // used, too easy for the visitor's volume) is solved anew once.
  async function paid(path, body, busy) {
    const check = window.arenaCaptcha || window.arenaPow;
    for (let attempt = 0; ; attempt++) {
      busy(gettext("Checking…"));
      const challenge = check ? await check.take() : null;
      busy(gettext("Sending…"));
      try {
        return await post(path, withField(body, "challenge", challenge));
      } catch (error) {
        if (attempt > 0 || !String(error.code || "").startsWith("challenge_")) throw error;
      } finally {
        if (check) check.refresh();
      }
    }
  }

  function withField(body, key, value) {
    if (!value) return body;
    if (!(body instanceof FormData)) return { ...body, [key]: value };
    const copy = new FormData();
    for (const [k, v] of body) copy.append(k, v);
    copy.set(key, value);
    return copy;
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
    if (status === 429) return gettext("Too many requests. Wait a moment and try again.");
    return fmt(gettext("The server could not handle that (HTTP %(status)s). Try again in a moment."), { status });
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
  const number = (n) => n.toLocaleString(document.documentElement.lang || "en");

  function promptLength(text) {
    let length = 0;
    for (const _ of text) length++;
    return length;
  }

  function tooLong(text) {
    const length = promptLength(text);
    if (!PROMPT_MAX || length <= PROMPT_MAX) return "";
    const limit = number(PROMPT_MAX);
    return fmt(
      gettext("Your prompt is %(length)s characters long; the limit is %(limit)s. Shorten it to send it."),
      { length: number(length), limit },
    );
  }

  function countPrompt() {
    if (!PROMPT_MAX || !promptCount) return;
    const length = promptLength(prompt.value);
    const over = length > PROMPT_MAX;
    promptCount.textContent = `${number(length)} / ${number(PROMPT_MAX)}`;
    promptCount.classList.toggle("is-over", over);
    prompt.setAttribute("aria-invalid", String(over));
    // Said once when the prompt goes over, not at every key: the text stays the same while over.
    const message = over
      ? fmt(gettext("Too long to send: the limit is %(limit)s characters."), { limit: number(PROMPT_MAX) })
      : "";
    if (promptTooLong.textContent !== message) promptTooLong.textContent = message;
  }

  prompt.addEventListener("input", countPrompt);
  countPrompt();

  async function submit() {
    if (send.disabled) return;
    const text = prompt.value;
    if (!text.trim()) {
      showFormError(gettext("Type a question first."));
      prompt.focus();
      return;
    }
    if (tooLong(text)) {
      showFormError(tooLong(text));
      prompt.focus();
      return;
    }
    let body;
    if (battle) {
      body = { prompt: text };
    } else {
      body = { prompt: text, mode: MODE };
      if (MODE === "named") {
        const [a, b] = pickers.map((select) => select.value);
        if (!a || !b) return showFormError(gettext("Pick a model for both sides."));
        if (a === b) return showFormError(gettext("Pick two different models."));
        body.model_a = a;
        body.model_b = b;
      } else if (DIRECT) {
        if (!pickers[0] || !pickers[0].value) return showFormError(gettext("Pick a model first."));
        body.model_a = pickers[0].value;
      }
    }

    const sentImage = battle ? null : attach.taken();
    if (sentImage) {
      const form = new FormData();
      for (const [key, value] of Object.entries(body)) form.append(key, value);
      form.append("image", sentImage.file);
      body = form;
    }

    setComposerBusy(true);
    showFormError("");
    let data;
    try {
      data = battle
        ? await post(`${API}${battle.id}/turns/`, body)
        : await paid(API, body, (label) => setComposerBusy(true, label));
    } catch (error) {
      if (error.code === "consent_required" && consent) askConsent();
      setComposerBusy(false);
      showFormError(error.message);
      return;
    }
    if (!battle) {
      startRound(data);
      history.pushState({ battle: data.id }, "", `/b/${data.id}/`);
    }
    lastPrompt = text;
    prompt.value = "";
    attach.clear();
    addTurn(text, sentImage && sentImage.url);
    openStream();
  }

  function startRound(data) {
    battle = { id: data.id, state: "pending" };
    root.classList.add("has-battle");
    newRound.hidden = false;
    for (const select of pickers) select.disabled = true;
    attach.show(false); // an image goes with the first prompt only
    showNames(data);
  }

  // Named battles name their models from the start; anonymous ones get null here until the vote.
  function showNames(data) {
    for (const side of SIDES) {
      const model = data[`model_${side}`];
      if (model) panes[side].name.textContent = ` · ${model.label}`;
    }
  }

  function addTurn(text, imageUrl) {
    for (const side of SIDES) {
      const pane = panes[side];
      pane.empty.hidden = true;
      const turn = el("div", "turn");
      const asked = el("div", "turn__prompt");
      asked.append(el("span", "turn__who", gettext("You")), promptNode(text));
      if (imageUrl) asked.append(turnImage(imageUrl));
      const answer = el("div", "answer");
      const body = el("div", "answer__body");
      answer.append(body);
      turn.append(asked, answer);
      pane.log.append(turn);
      pane.answer = { el: answer, body, text: "", state: "waiting", frame: 0 };
    }
    awaitAnswers(SIDES);
  }

  // The sides named are about to be streamed: their panes wait, the vote waits for them.
  function awaitAnswers(sides) {
    battle.state = "streaming";
    for (const side of sides) {
      const pane = panes[side];
      pane.log.setAttribute("aria-busy", "true");
      setStatus(pane, "waiting");
    }
    setVotes(false);
    voteBox.hidden = false;
    voteNote.textContent = DIRECT ? gettext("The model is answering…") : gettext("Voting opens when both answers have finished.");
    voteNote.classList.remove("is-error");
    regenerateButton.hidden = true;
    stopButton.hidden = false;
    stopButton.disabled = false;
    form.hidden = false;
    setComposerBusy(true, "Answering…");
    // Keyboard users land on Stop, not on the page's body; the vote bar takes over at the end.
    stopButton.focus({ preventScroll: true });
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
      finish();
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
      fail(pane, event.text || gettext("This answer failed."));
    }
  }

  function fail(pane, message, stopped) {
    const answer = pane.answer;
    const wasStopped = stopped || message === "The answer was stopped.";
    answer.state = "error";
    setStatus(pane, wasStopped ? "stopped" : "error");
    const box = el("div", wasStopped ? "answer__error is-stopped" : "answer__error");
    box.setAttribute("role", "alert");
    box.append(
      el("strong", "", wasStopped ? gettext("Stopped.") + " " : gettext("This answer failed.") + " "),
      document.createTextNode(wasStopped ? gettext("This answer was stopped before it ended.") : message),
    );
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
        fail(pane, gettext("The connection to the server was lost before this answer finished."));
      }
    }
    finish();
  }

  // The stream ended: the server says what may be done now (vote, retry, ask again, follow up).
  async function finish() {
    stopButton.hidden = true;
    for (const side of SIDES) {
      const pane = panes[side];
      if (pane.answer && pane.answer.state !== "error" && pane.answer.state !== "done") {
        pane.answer.state = "done";
        setStatus(pane, "done");
        endAnswer(pane);
      }
    }
    const id = battle.id;
    let detail;
    try {
      detail = await get(`${API}${id}/`);
    } catch (error) {
      voteNote.textContent = error.message;
      voteNote.classList.add("is-error");
      return;
    }
    if (!battle || battle.id !== id) return; // a new round began meanwhile
    if (detail.state === "streaming") {
      // The connection broke before the server saw the stream end: read the battle until it has.
      watching = setTimeout(() => resume(id), 1000);
      return;
    }
    applyState(detail, { focus: true });
    loadHistory();
  }

  // --- what may be done next ------------------------------------------------------------------

  function applyState(detail, { focus }) {
    const actions = detail.actions;
    battle.state = detail.state;
    if (detail.state === "voted") {
      reveal({ winner: detail.vote && detail.vote.winner, model_a: detail.model_a, model_b: detail.model_b });
      if (window.arenaReasons) window.arenaReasons.show(detail.vote);
      return;
    }
    voteBox.hidden = false;
    stopButton.hidden = !actions.stop;
    regenerateButton.hidden = !actions.regenerate;
    regenerateButton.disabled = false;
    setVotes(actions.vote);
    for (const side of SIDES) showRetry(panes[side], actions.retry.includes(side));

    const failed = SIDES.filter((s) => panes[s].answer && panes[s].answer.state === "error");
    voteNote.classList.toggle("is-error", detail.state === "failed");
    if (DIRECT) {
      voteNote.textContent =
        detail.state === "ready"
          ? gettext("The answer is in. Ask a follow-up, or start a new chat.")
          : gettext("The answer did not complete. Retry it, or start a new chat.");
    } else if (detail.state === "ready") {
      voteNote.textContent = gettext("Both answers are in. Which one is better?");
    } else {
      const what =
        failed.length === 1
          ? fmt(gettext("Model %(side)s’s latest answer did not complete"), { side: failed[0].toUpperCase() })
          : gettext("Neither latest answer completed");
      let next = gettext("It was tried as often as a turn allows");
      if (actions.retry.length > 1) next = gettext("Retry them, or ask both again");
      else if (actions.retry.length) next = gettext("Retry it, or ask both again");
      else if (actions.regenerate) next = gettext("Ask both again");
      let note;
      if (actions.vote) {
        note = ngettext(
          "%(what)s. %(next)s — or vote now on the turn before it.",
          "%(what)s. %(next)s — or vote now on the turns before it.",
          actions.vote_covers,
        );
      } else if (actions.retry.length || actions.regenerate) {
        note = gettext("%(what)s, so this round can’t be voted on yet. %(next)s.");
      } else {
        note = gettext("%(what)s, so this round can’t be voted on yet. %(next)s; start a new round.");
      }
      voteNote.textContent = fmt(note, { what, next });
    }

    form.hidden = !actions.follow_up;
    if (actions.follow_up) {
      promptLabel.textContent = DIRECT
        ? gettext("Ask a follow-up — the model sees the conversation so far")
        : gettext("Ask a follow-up — both models see the conversation so far");
      prompt.placeholder = gettext("Ask a follow-up…");
    }
    setComposerBusy(false);
    if (!focus) return;
    const retryButton = root.querySelector("[data-retry]:not([hidden])");
    // When the answers end, the keyboard is where the next decision is: the vote, else a retry.
    if (actions.vote) voteGroup.focus();
    else if (retryButton) retryButton.focus();
    else if (actions.regenerate) regenerateButton.focus();
    else newRound.focus();
  }

  function showRetry(pane, allowed) {
    const answer = pane.answer;
    if (!answer) return;
    let button = answer.el.querySelector("[data-retry]");
    if (!allowed) {
      if (button) button.hidden = true;
      return;
    }
    if (!button) {
      button = el("button", "btn btn--small answer__retry", gettext("Retry"));
      button.type = "button";
      button.dataset.retry = pane.el.dataset.side;
      button.setAttribute(
        "aria-label",
        fmt(gettext("Retry model %(side)s’s answer"), { side: pane.el.dataset.side.toUpperCase() }),
      );
      button.addEventListener("click", () => retry(pane.el.dataset.side, button));
      const box = answer.el.querySelector(".answer__error") || answer.el;
      box.append(button);
    }
    button.hidden = false;
    button.disabled = false;
  }

  // --- trying again, stopping -------------------------------------------------------------------

  async function retry(side, button) {
    if (!battle) return;
    button.disabled = true;
    const id = battle.id;
    let data;
    try {
      data = await paid(`${API}${id}/retry/`, { side }, (label) => (button.textContent = label));
    } catch (error) {
      button.textContent = gettext("Retry");
      button.disabled = false;
      voteNote.textContent = error.message;
      voteNote.classList.add("is-error");
      return;
    }
    if (!battle || battle.id !== id) return;
    const pane = panes[side];
    clearAnswer(pane);
    awaitAnswers([side]);
    if (data.fresh_model) {
      // Honest about what changed, without saying which model it is.
      voteNote.textContent = fmt(
        gettext(
          "Model %(side)s failed twice, so a different model, drawn at random, answers for side %(side)s now. " +
            "Voting opens when both answers have finished.",
        ),
        { side: side.toUpperCase() },
      );
    }
    openStream();
  }

  regenerateButton.addEventListener("click", async () => {
    if (!battle) return;
    regenerateButton.disabled = true;
    const id = battle.id;
    try {
      await paid(`${API}${id}/regenerate/`, {}, (label) => (regenerateButton.textContent = label));
    } catch (error) {
      regenerateButton.disabled = false;
      voteNote.textContent = error.message;
      voteNote.classList.add("is-error");
      return;
    } finally {
      regenerateButton.textContent = REGENERATE;
    }
    if (!battle || battle.id !== id) return;
    for (const side of SIDES) clearAnswer(panes[side]);
    awaitAnswers(SIDES);
    openStream();
  });

  // The latest answer of a pane, emptied for the next try.
  function clearAnswer(pane) {
    const answer = pane.answer;
    if (!answer) return;
    cancelAnimationFrame(answer.frame);
    answer.frame = 0;
    answer.text = "";
    answer.state = "waiting";
    answer.body.replaceChildren();
    for (const extra of answer.el.querySelectorAll(".answer__error")) extra.remove();
  }

  async function stop() {
    if (!battle || stopButton.hidden || stopButton.disabled) return;
    stopButton.disabled = true;
    stopButton.textContent = gettext("Stopping…");
    try {
      // The stream ends by itself within a moment, each side with its "stopped" event.
      await post(`${API}${battle.id}/stop/`);
      if (!source) await finish(); // stopped before its stream began
    } catch {
      // Closing the stream stops the answers too.
      closeStream();
      broken();
    } finally {
      stopButton.textContent = gettext("Stop");
    }
  }

  stopButton.addEventListener("click", stop);

  // --- voting -----------------------------------------------------------------------------------

  for (const button of voteButtons) {
    button.addEventListener("click", () => vote(button.dataset.winner, button));
  }

  // Shortcuts, also listed beside the vote bar; never while typing, nor with a modifier held.
  const KEYS = { a: "a", b: "b", t: "tie", x: "bothbad" };
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    if (event.target.closest && event.target.closest("input, textarea, select, [contenteditable]")) return;
    if (event.key === "Escape" && !stopButton.hidden) {
      event.preventDefault();
      stop();
      return;
    }
    const winner = KEYS[String(event.key || "").toLowerCase()];
    const button = winner && voteButtons.find((b) => b.dataset.winner === winner);
    if (!button || button.disabled || voteBox.hidden) return;
    event.preventDefault();
    vote(winner, button);
  });

  async function vote(winner, button) {
    if (!battle || button.disabled) return;
    setVotes(false);
    voteNote.textContent = gettext("Sending your vote…");
    voteNote.classList.remove("is-error");
    let data;
    try {
      // The optional reasons (static/arena/home.js): a bad one refuses the vote, which can be sent again.
      const reasons = window.arenaReasons ? window.arenaReasons.collect() : {};
      data = await post(`${API}${battle.id}/vote/`, { winner, ...reasons });
    } catch (error) {
      voteNote.textContent = error.message;
      voteNote.classList.add("is-error");
      setVotes(true);
      return;
    }
    button.setAttribute("aria-pressed", "true");
    reveal(data);
    loadHistory();
  }

  const VERDICT = {
    a: gettext("A is better"),
    b: gettext("B is better"),
    tie: gettext("Tie"),
    bothbad: gettext("Both are bad"),
  };

  function reveal(data) {
    battle.state = "voted";
    if (window.arenaReasons) window.arenaReasons.lock();
    const winner = data.winner;
    root.classList.add("is-revealed");
    form.hidden = true;
    voteBox.hidden = false;
    stopButton.hidden = true;
    regenerateButton.hidden = true;
    setVotes(false);
    for (const button of voteButtons) button.setAttribute("aria-pressed", String(button.dataset.winner === winner));
    for (const button of root.querySelectorAll("[data-retry]")) button.hidden = true;
    const names = {};
    for (const side of SIDES) {
      const pane = panes[side];
      const model = data[`model_${side}`] || {};
      names[side] = model.label || gettext("an unnamed model");
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
    voteNote.textContent = fmt(
      gettext(
        "You voted “%(verdict)s”. Model A was %(a)s; model B was %(b)s. " +
          "Thanks — start a new round whenever you like.",
      ),
      { verdict: VERDICT[winner] || winner, a: names.a, b: names.b },
    );
    newRound.hidden = false;
    newRound.classList.add("btn--primary");
    newRound.focus();
    // static/arena/share.js offers a share link from here on.
    root.dispatchEvent(new CustomEvent("arena:voted", { detail: { id: battle.id } }));
  }

  function badgeFor(winner, side) {
    if (winner === side) return { kind: "win", text: gettext("Your pick") };
    if (winner === "tie") return { kind: "tie", text: gettext("Tie") };
    if (winner === "bothbad") return { kind: "bad", text: gettext("Both bad") };
    return null;
  }

  function setVotes(enabled) {
    for (const button of voteButtons) button.disabled = !enabled;
  }

  // --- a new round ------------------------------------------------------------------------------

  newRound.addEventListener("click", () => {
    reset();
    history.pushState({}, "", HOME);
    // The prompt survives: what was typed stays, and an empty box gets the round's last question.
    if (!prompt.value.trim() && lastPrompt) prompt.value = lastPrompt;
    prompt.focus();
    prompt.select();
  });

  function reset() {
    closeStream();
    clearTimeout(watching);
    battle = null;
    root.dispatchEvent(new CustomEvent("arena:reset"));
    root.classList.remove("is-revealed", "has-battle");
    if (window.arenaReasons) window.arenaReasons.reset();
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
    stopButton.hidden = true;
    regenerateButton.hidden = true;
    for (const select of pickers) select.disabled = false;
    newRound.hidden = true;
    newRound.classList.remove("btn--primary");
    form.hidden = false;
    attach.show(true);
    promptLabel.textContent = gettext("Your question");
    prompt.placeholder = PLACEHOLDER;
    showFormError("");
    setComposerBusy(false);
  }

  // --- coming back to a battle ------------------------------------------------------------------

  window.addEventListener("popstate", (event) => {
    const id = event.state && event.state.battle;
    if (id) resume(id);
    else if (battle) {
      reset();
      prompt.focus();
    }
  });

  // The battle as the API stores it: every turn, what may be done now, and the stream if it waits.
  async function resume(id) {
    closeStream();
    clearTimeout(watching);
    let detail;
    try {
      detail = await get(`${API}${id}/`);
    } catch (error) {
      reset();
      showFormError(
        error.status === 404 ? gettext("That battle is not yours, or it no longer exists.") : error.message,
      );
      return;
    }
    reset();
    battle = { id, state: detail.state };
    root.classList.add("has-battle");
    history.replaceState({ battle: id }, "", `/b/${id}/`);
    newRound.hidden = false;
    for (const select of pickers) select.disabled = true;
    showNames(detail);
    attach.show(false);
    for (const turn of detail.turns) showStoredTurn(turn, turn.index === 0 ? detail.image : null);
    if (detail.turns.length) lastPrompt = detail.turns[detail.turns.length - 1].prompt;

    if (detail.state === "pending") {
      const waiting = SIDES.filter((s) => detail.turns.at(-1).answers[s].status === "pending");
      awaitAnswers(waiting);
      openStream();
    } else if (detail.state === "streaming") {
      // Another window streams it (or one closed a moment ago): read it again until it ends.
      awaitAnswers(SIDES.filter((s) => detail.turns.at(-1).answers[s].status === "streaming"));
      voteNote.textContent = gettext(
        "These answers are being written in another window; this page follows them.",
      );
      stopButton.hidden = true;
      watching = setTimeout(() => resume(id), 1000);
    } else {
      applyState(detail, { focus: false });
    }
  }

  function showStoredTurn(turn, imageUrl) {
    const answered = {};
    for (const side of SIDES) answered[side] = turn.answers[side];
    for (const side of SIDES) {
      const pane = panes[side];
      pane.empty.hidden = true;
      const box = el("div", "turn");
      const asked = el("div", "turn__prompt");
      asked.append(el("span", "turn__who", gettext("You")), el("p", "turn__prompt-text", turn.prompt));
      if (imageUrl) asked.append(turnImage(imageUrl));
      const answerEl = el("div", "answer");
      const body = el("div", "answer__body");
      answerEl.append(body);
      box.append(asked, answerEl);
      pane.log.append(box);
      const stored = answered[side];
      pane.answer = { el: answerEl, body, text: stored.text, state: "waiting", frame: 0 };
      if (stored.status === "done") {
        pane.answer.state = "done";
        setStatus(pane, "done");
        endAnswer(pane);
      } else if (stored.status === "error" || stored.status === "stopped") {
        fail(pane, gettext("This answer did not complete."), stored.status === "stopped");
      } else {
        renderNow(pane.answer);
      }
    }
  }

  // --- the visitor's recent battles -------------------------------------------------------------

  const STATE_LABEL = {
    pending: gettext("waiting for answers"),
    streaming: gettext("answering"),
    ready: gettext("ready for your vote"),
    failed: gettext("an answer did not complete"),
  };

  async function loadHistory() {
    if (!historyBox) return;
    let battles;
    try {
      battles = await get("/api/v1/visitor/battles");
    } catch {
      return;
    }
    historyList.replaceChildren(
      ...battles.map((item) => {
        const row = el("li", "history__item");
        const link = el("a", "history__link", item.prompt || gettext("(no prompt)"));
        link.href = `/b/${item.id}/`;
        if (location.pathname === link.pathname) link.setAttribute("aria-current", "page");
        let meta = item.winner
          ? fmt(gettext("voted: %(verdict)s"), { verdict: VERDICT[item.winner] })
          : STATE_LABEL[item.state] || item.state;
        if (item.mode === "direct") meta = gettext("chat") + (item.model_a ? ` · ${item.model_a.label}` : "");
        else if (item.model_a && item.model_b) {
          meta += " · " + fmt(gettext("%(a)s vs %(b)s"), { a: item.model_a.label, b: item.model_b.label });
        }
        if (item.turns > 1) meta += " · " + fmt(ngettext("%(n)s turn", "%(n)s turns", item.turns), { n: item.turns });
        const when = new Date(item.created);
        const time = el("time", "history__when", when.toLocaleString(document.documentElement.lang || undefined));
        time.dateTime = item.created;
        const details = el("span", "history__meta", `${meta} · `);
        details.append(time);
        row.append(link, details);
        return row;
      }),
    );
    historyBox.hidden = battles.length === 0;
  }

  // --- small helpers ----------------------------------------------------------------------------

  const STATUS = {
    waiting: gettext("Waiting…"),
    streaming: gettext("Streaming…"),
    done: gettext("Done"),
    error: gettext("Failed"),
    stopped: gettext("Stopped"),
  };

  function setStatus(pane, state) {
    pane.status.hidden = !state;
    pane.status.textContent = state ? STATUS[state] : "";
    pane.status.dataset.state = state || "";
  }

  function setComposerBusy(busy, label) {
    prompt.disabled = busy || !consented;
    send.disabled = busy || !consented;
    attach.disable(busy || !consented);
    send.textContent = busy ? label || gettext("Sending…") : gettext("Send");
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

  // --- starting up ------------------------------------------------------------------------------

  if (root.dataset.battle) resume(root.dataset.battle);
  loadHistory();

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

  function turnImage(url) {
    const img = el("img", "turn__image");
    img.src = url;
    img.alt = gettext("The image sent with this question");
    return img;
  }

  function promptNode(text) {
    return window.arenaRender ? window.arenaRender.prompt(text) : el("p", "turn__prompt-text", text);
  }
})();
