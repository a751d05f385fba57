// The proof-of-work a battle costs (arena/gate.py): fetch a challenge, and find the number n at most
// maxNumber with SHA-256(salt + n) == challenge, in the background while the person types. ALTCHA's
// v1 challenge format, solved with WebCrypto; the payload goes with the battle as `challenge`.
// window.arenaPow.take() gives the solved payload (null when the site asks for none); refresh(), called
// once the battle is open, starts on the next, at the difficulty the new battle brought.
"use strict";

(() => {
  // Strings through Django's catalogue (/jsi18n/, loaded before this file); English without it.
  const gettext = window.gettext || ((s) => s);
  const interpolate =
    window.interpolate || ((f, o) => f.replace(/%\((\w+)\)s/g, (_, k) => String(o[k])));
  const fmt = (text, values) => interpolate(text, values, true);
  const CHALLENGE_URL = "/api/v1/challenge/";
  const BATCH = 2000; // hashes in flight between two yields to the page
  const MARGIN_MS = 30_000; // a challenge this close to expiring is solved anew

  const encoder = new TextEncoder();
  let pending = null; // Promise of {payload, expires} for the challenge being solved

  function hexToBytes(hex) {
    const bytes = new Uint8Array(hex.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.substr(i * 2, 2), 16);
    return bytes;
  }

  function equal(buffer, target) {
    const bytes = new Uint8Array(buffer);
    for (let i = 0; i < target.length; i++) if (bytes[i] !== target[i]) return false;
    return true;
  }

  async function search(challenge) {
    const target = hexToBytes(challenge.challenge);
    for (let start = 0; start <= challenge.maxNumber; start += BATCH) {
      const end = Math.min(start + BATCH - 1, challenge.maxNumber);
      const digests = [];
      for (let n = start; n <= end; n++) {
        digests.push(crypto.subtle.digest("SHA-256", encoder.encode(challenge.salt + n)));
      }
      const found = (await Promise.all(digests)).findIndex((digest) => equal(digest, target));
      if (found >= 0) return start + found;
    }
    throw new Error(gettext("The challenge has no solution."));
  }

  async function solveNext() {
    const started = performance.now();
    const response = await fetch(CHALLENGE_URL, { credentials: "same-origin", cache: "no-store" });
    if (response.status === 204) return { payload: null, expires: Infinity };
    if (!response.ok) {
      throw new Error(fmt(gettext("The challenge could not be fetched (HTTP %(status)s)."), { status: response.status }));
    }
    const challenge = await response.json();
    if (!challenge.challenge) return { payload: null, expires: Infinity }; // a vendor's check, not ours
    const number = await search(challenge);
    const expires = Number(new URLSearchParams(challenge.salt.split("?")[1] || "").get("expires")) * 1000;
    const payload = btoa(
      JSON.stringify({
        algorithm: challenge.algorithm,
        challenge: challenge.challenge,
        number,
        salt: challenge.salt,
        signature: challenge.signature,
      }),
    );
    window.arenaPow.lastSolveMs = performance.now() - started;
    return { payload, expires: expires || Infinity };
  }

  function prepare() {
    pending = solveNext();
    pending.catch(() => {}); // reported by take(), which asks again
    return pending;
  }

  async function take() {
    let solved;
    try {
      solved = await (pending || prepare());
      if (solved.expires - Date.now() < MARGIN_MS) solved = await prepare();
    } catch {
      solved = await prepare(); // once more: a network blip or a challenge gone stale
    }
    pending = null; // each challenge serves once: refresh() starts on the next
    return solved.payload;
  }

  window.arenaPow = { take, refresh: prepare, lastSolveMs: null };
  prepare();
})();
