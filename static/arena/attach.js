// The "Attach an image" control of the battle pages: checks the file's type and size as the server
// will (providers/images.py checks it again and strips its metadata), shows a thumbnail, and hands
// the file to static/arena/battle.js through window.arenaAttach. Loaded before battle.js.
"use strict";

(() => {
  const gettext = window.gettext || ((s) => s);
  const box = document.getElementById("attach");
  if (!box) return;
  const input = document.getElementById("image");
  const preview = document.getElementById("image-preview");
  const thumb = preview.querySelector('[data-role="thumb"]');
  const remove = document.getElementById("image-remove");
  const error = document.getElementById("composer-error");
  const TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif"];
  const MAX_BYTES = 5 * 1024 * 1024;

  let attached = null; // {file, url}: the file and its data: URL (the page's CSP allows data: images)

  function showError(message) {
    error.textContent = message;
    error.hidden = !message;
  }

  function clear() {
    attached = null;
    input.value = "";
    preview.hidden = true;
    thumb.removeAttribute("src");
  }

  input.addEventListener("change", () => {
    const file = input.files[0];
    clear();
    if (!file) return;
    if (!TYPES.includes(file.type)) return showError(gettext("Attach a PNG, JPEG, WebP or GIF image."));
    if (file.size > MAX_BYTES) return showError(gettext("The image is larger than 5 MB."));
    showError("");
    const reader = new FileReader();
    reader.addEventListener("load", () => {
      attached = { file, url: reader.result };
      thumb.src = reader.result;
      preview.hidden = false;
    });
    reader.readAsDataURL(file);
  });
  remove.addEventListener("click", clear);

  window.arenaAttach = {
    taken: () => attached,
    clear,
    // An image goes with a battle's first prompt only: the control is hidden once a battle starts.
    show(visible) {
      box.hidden = !visible;
      clear();
    },
    disable(disabled) {
      input.disabled = disabled;
    },
  };
})();
