// The privacy page: delete this visitor's data (DELETE /api/v1/visitor/data) after a confirmation.
"use strict";

(() => {
  // Strings through Django's catalogue (/jsi18n/, loaded before this file); English without it.
  const gettext = window.gettext || ((s) => s);
  const interpolate =
    window.interpolate || ((f, o) => f.replace(/%\((\w+)\)s/g, (_, k) => String(o[k])));
  const fmt = (text, values) => interpolate(text, values, true);
  const button = document.getElementById("delete-data");
  const note = document.getElementById("delete-note");
  const download = document.getElementById("download-data");
  if (!button || !note) return;

  const say = (message, done) => {
    note.textContent = message;
    note.classList.toggle("is-done", done);
    note.hidden = false;
  };

  button.addEventListener("click", async () => {
    const sure = window.confirm(
      gettext(
        "Delete your data? Battles without a vote are deleted; in voted battles your prompts and the " +
          "answers are erased and the anonymous vote is kept, as is a voter flag if the integrity check " +
          "raised one. This cannot be undone.",
      ),
    );
    if (!sure) return;
    button.disabled = true;
    let response;
    try {
      response = await fetch("/api/v1/visitor/data", {
        method: "DELETE",
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
    } catch {
      button.disabled = false;
      say(gettext("Could not reach the server. Check your connection and try again."), false);
      return;
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      button.disabled = false;
      say(
        (data && data.detail) ||
          fmt(gettext("The server could not delete it (HTTP %(status)s)."), { status: response.status }),
        false,
      );
      return;
    }
    button.hidden = true;
    if (download) download.hidden = true; // nothing is linked to this browser any more
    say(
      fmt(
        gettext(
          "Done: %(deleted)s battle(s) deleted, %(anonymised)s voted battle(s) erased and unlinked from you.",
        ),
        { deleted: data.battles_deleted, anonymised: data.battles_anonymised },
      ),
      true,
    );
  });
})();
