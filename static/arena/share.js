// The share box of the battle pages: once the battle has its vote (battle.js says so with
// "arena:voted"), the visitor may make a public read-only page of it, and revoke it. Nothing is
// public until they press Share.
"use strict";

(() => {
  const gettext = window.gettext || ((s) => s);
  const root = document.getElementById("arena");
  const box = document.getElementById("share");
  if (!root || !box) return;
  const create = document.getElementById("share-create");
  const revoke = document.getElementById("share-revoke");
  const url = document.getElementById("share-url");
  const status = document.getElementById("share-status");
  let battleId = null;

  async function call(method) {
    const response = await fetch(`/api/v1/battles/${battleId}/share/`, {
      method,
      headers: { Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new Error((data && data.detail) || gettext("The server could not do that."));
    return data;
  }

  function show(link) {
    url.hidden = !link;
    url.value = link ? new URL(link, location.origin).href : "";
    revoke.hidden = !link;
    create.hidden = Boolean(link);
  }

  root.addEventListener("arena:voted", (event) => {
    battleId = event.detail.id;
    show(null);
    status.textContent = "";
    box.hidden = false;
  });

  root.addEventListener("arena:reset", () => {
    battleId = null;
    box.hidden = true;
  });

  create.addEventListener("click", async () => {
    if (!battleId) return;
    create.disabled = true;
    try {
      const data = await call("POST");
      show(data.url);
      status.textContent = gettext("Anyone with this link can read this battle.");
      url.focus();
      url.select();
    } catch (error) {
      status.textContent = error.message;
    } finally {
      create.disabled = false;
    }
  });

  revoke.addEventListener("click", async () => {
    if (!battleId) return;
    revoke.disabled = true;
    try {
      await call("DELETE");
      show(null);
      status.textContent = gettext("The link is revoked: its page is gone.");
    } catch (error) {
      status.textContent = error.message;
    } finally {
      revoke.disabled = false;
    }
  });
})();
