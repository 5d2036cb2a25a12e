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

  const sorted = (ids) => JSON.stringify([...ids].sort());

  // What the save did, in words: agreeing keeps the tier and the points and flags; a form that kept the
  // model's tier but changed a point or flag corrected those.
  function said(item, agree, data) {
    if (agree) return `saved: agreed (${data.tier})`;
    if (!data.agrees) return `saved: corrected to ${data.tier}`;
    const model = JSON.parse(item.dataset.model);
    const kept = ["covered", "red_flags"].every((k) => data[k] == null || sorted(data[k]) === sorted(model[k]));
    return kept ? `saved: agreed (${data.tier})` : `saved: kept the tier (${data.tier}), corrected points or flags`;
  }

  // The saved review is now the latest: Agree saves it again (not the model's grade the page was loaded
  // with), and the form shows it.
  function remember(item, form, data) {
    const latest = { tier: data.tier };
    if (data.covered != null) latest.covered = data.covered;
    if (data.red_flags != null) latest.red_flags = data.red_flags;
    item.dataset.agree = JSON.stringify(latest);
    item.dataset.seen = String(data.id);
    form.querySelector("button.agree").textContent = `Agree with ${data.reviewer} (${data.tier})`;
    const radio = form.querySelector(`input[name="tier"][value="${data.tier}"]`);
    if (radio) radio.checked = true;
    for (const name of ["covered", "red_flags"]) {
      if (data[name] == null) continue;
      form.querySelectorAll(`input[name="${name}"]`).forEach((box) => (box.checked = data[name].includes(box.value)));
    }
  }

  // A page the browser brings back from its memory (Back) shows the queue as it was: load it again.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) location.reload();
  });

  // The last save's status, also in a corner that stays in view: a save moves the page on to the next grade,
  // and the item's own status (an error too) had scrolled away.
  const lastSave = document.getElementById("last-save");
  function announce(item, status) {
    if (!lastSave) return;
    lastSave.className = status.className;
    lastSave.textContent = `${item.dataset.label}: ${status.textContent}`;
    lastSave.hidden = false;
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
    body.seen = Number(item.dataset.seen || 0); // the answer then names reviews made since this page loaded
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
      status.textContent = said(item, agree, data);
      if (data.newer && data.newer.length) {
        status.className = "status warn";
        const others = data.newer.map((r) => `${r.reviewer} (${r.tier})`).join(", ");
        status.textContent += `; note: reviewed since this page loaded by ${others}, which this review now follows`;
      }
      item.classList.add("done");
      item.dataset.reviewed = data.tier;
      remember(item, form, data);
      const index = items.indexOf(item);
      if (index === current) select(current + 1);
    } catch (error) {
      status.className = "status error";
      status.textContent = `not saved: ${error.message}`;
    } finally {
      announce(item, status);
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
