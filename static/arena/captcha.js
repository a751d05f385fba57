// A vendor's bot check (Cloudflare Turnstile, hCaptcha or reCAPTCHA) in place of the proof-of-work,
// when the operator configures one; the server asks the vendor about each token (arena/captcha.py).
// The vendor's script renders its widget into #captcha and calls the functions its data attributes
// name; the token goes with the battle as `challenge`. window.arenaCaptcha.take() gives the token,
// waiting for the person if the widget asks them something; each token serves once, so refresh(),
// called once the battle is sent, resets the widget for the next.
"use strict";

(() => {
  const box = document.getElementById("captcha");
  if (!box) return;
  const API = { turnstile: "turnstile", hcaptcha: "hcaptcha", recaptcha: "grecaptcha" }[box.dataset.vendor];

  let token = null; // the latest token, not yet sent
  let waiting = null; // resolves a take() that came before the token

  window.arenaCaptchaSolved = (value) => {
    if (waiting) {
      waiting(value);
      waiting = null;
    } else {
      token = value;
    }
  };
  // An expired token would be refused; a failed check shows the vendor's own message in the widget.
  window.arenaCaptchaExpired = () => {
    token = null;
  };
  window.arenaCaptchaFailed = () => {
    token = null;
  };

  function take() {
    if (token) {
      const value = token;
      token = null;
      return Promise.resolve(value);
    }
    return new Promise((resolve) => {
      waiting = resolve;
    });
  }

  function refresh() {
    token = null;
    const api = window[API];
    if (api && typeof api.reset === "function") api.reset();
  }

  window.arenaCaptcha = { take, refresh };
})();
