// The review queue: agree or correct a grade with one click or one key. Posts to /v1/reviews with the
// session cookie (SameSite=Strict); text from the server is only ever set as textContent. Agree saves what
// the item's data-agree holds: the latest review's tier and points, or the model's tier.
"use strict";
(function () {
  const items = Array.from(document.querySelectorAll("article.item"));
  let current = 0;

  // `move`: scroll to the item and focus it (keys, a saved review). A click only marks it current: the
  // click has put the focus where the reviewer wants it (the note, a checkbox), and it stays there.
  function select(index, move = true) {
    if (!items.length) return;
    current = Math.max(0, Math.min(items.length - 1, index));
    items.forEach((item, i) => item.classList.toggle("current", i === current));
    if (!move) return;
    items[current].scrollIntoView({ block: "nearest" });
    items[current].focus({ preventScroll: true });
  }

  function values(form, name) {
    return Array.from(form.querySelectorAll(`input[name="${name}"]:checked`)).map((input) => input.value);
  }

  async function send(item, agree) {
    if (item.dataset.saving) return; // a second key press while the first is on its way
    const form = item.querySelector("form.review");
    const status = form.querySelector(".status");
    const body = { grade_id: item.dataset.gradeId };
    if (agree) {
      Object.assign(body, JSON.parse(item.dataset.agree));
    } else {
      body.tier = (form.querySelector('input[name="tier"]:checked') || {}).value;
      if (form.querySelector('input[name="covered"]')) body.covered = values(form, "covered");
      if (form.querySelector('input[name="red_flags"]')) body.red_flags = values(form, "red_flags");
    }
    const note = form.querySelector('input[name="note"]').value.trim();
    if (note) body.note = note;
    status.className = "status";
    status.textContent = "saving…";
    item.dataset.saving = "1";
    try {
      const response = await fetch("/v1/reviews", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        credentials: "same-origin",
        body: JSON.stringify(body),
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(data.detail || `HTTP ${response.status}`);
      status.className = "status ok";
      status.textContent = agree || data.agrees ? `saved: agreed (${data.tier})` : `saved: corrected to ${data.tier}`;
      item.classList.add("done");
      item.dataset.reviewed = data.tier;
      const index = items.indexOf(item);
      if (index === current) select(current + 1);
    } catch (error) {
      status.className = "status error";
      status.textContent = `not saved: ${error.message}`;
    } finally {
      delete item.dataset.saving;
    }
  }

  items.forEach((item, i) => {
    const form = item.querySelector("form.review");
    item.addEventListener("click", () => select(i, false));
    form.querySelector("button.agree").addEventListener("click", () => send(item, true));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      send(item, false);
    });
  });

  document.addEventListener("keydown", (event) => {
    const typing =
      event.target instanceof HTMLInputElement && !["checkbox", "radio", "button", "submit"].includes(event.target.type);
    const inField = typing || event.target instanceof HTMLSelectElement || event.target instanceof HTMLTextAreaElement;
    if (event.ctrlKey || event.metaKey || event.altKey || !items.length) return;
    if (inField) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    // Enter and Space on a button or link do what they say (Agree, Filter, Log out), not "save".
    const control = event.target instanceof HTMLButtonElement || event.target instanceof HTMLAnchorElement;
    if (control && (event.key === "Enter" || event.key === " ")) return;
    if (event.repeat && (event.key === "a" || event.key === "Enter")) return; // a held key saves once
    const item = items[current];
    const form = item.querySelector("form.review");
    const tiers = { 1: "great", 2: "mediocre", 3: "poor" };
    if (event.key === "j") select(current + 1);
    else if (event.key === "k") select(current - 1);
    else if (event.key === "a") send(item, true);
    else if (event.key in tiers) {
      const radio = form.querySelector(`input[name="tier"][value="${tiers[event.key]}"]`);
      if (radio) radio.checked = true;
    } else if (event.key === "Enter") send(item, false);
    else if (event.key === "n") form.querySelector('input[name="note"]').focus();
    else return;
    event.preventDefault();
  });
})();
