// The battle pages' invitations and the vote's optional reasons: a suggested question fills the
// prompt box (the visitor still sends it); battle.js sends the ticked tags and the comment with the
// vote through window.arenaReasons, and locks or clears them as the round ends or restarts.
"use strict";

(() => {
  const root = document.getElementById("arena");
  if (!root) return;
  const prompt = document.getElementById("prompt");

  for (const button of root.querySelectorAll("[data-suggestion]")) {
    button.addEventListener("click", () => {
      if (prompt.disabled) return;
      prompt.value = button.dataset.suggestion;
      // battle.js counts the characters on input.
      prompt.dispatchEvent(new Event("input", { bubbles: true }));
      prompt.focus();
    });
  }

  const box = document.getElementById("reasons");
  if (!box) return;
  const tags = [...box.querySelectorAll('input[name="reason"]')];
  const comment = document.getElementById("reason-comment");

  window.arenaReasons = {
    // Only what was given: a vote without reasons sends none.
    collect() {
      const body = {};
      const ticked = tags.filter((t) => t.checked).map((t) => t.value);
      if (ticked.length) body.tags = ticked;
      if (comment.value.trim()) body.comment = comment.value;
      return body;
    },
    // After the vote: what was sent stays in view, unchangeable.
    lock() {
      for (const tag of tags) tag.disabled = true;
      comment.readOnly = true;
    },
    // A voted battle reopened: the reasons it was given, locked.
    show(vote) {
      const given = new Set((vote && vote.tags) || []);
      for (const tag of tags) tag.checked = given.has(tag.value);
      comment.value = (vote && vote.comment) || "";
      this.lock();
    },
    reset() {
      for (const tag of tags) {
        tag.checked = false;
        tag.disabled = false;
      }
      comment.value = "";
      comment.readOnly = false;
    },
  };
})();
