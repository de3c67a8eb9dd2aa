// What HTML cannot do alone: local times, live countdowns, and the scribe's keyboard.
(function () {
  "use strict";

  const pad = (n) => String(n).padStart(2, "0");

  function relative(ms) {
    const abs = Math.abs(ms);
    const min = Math.round(abs / 60000);
    let text;
    if (abs < 45000) text = "just now";
    else if (min < 60) text = min + " min";
    else if (min < 48 * 60) text = Math.floor(min / 60) + " h " + (min % 60 ? (min % 60) + " min" : "");
    else text = Math.round(min / 1440) + " days";
    if (text === "just now") return text;
    return ms < 0 ? text.trim() + " ago" : "in " + text.trim();
  }

  function localTime(date) {
    const now = new Date();
    const sameDay = date.toDateString() === now.toDateString();
    const hm = pad(date.getHours()) + ":" + pad(date.getMinutes());
    return sameDay ? hm : date.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + hm;
  }

  function renderTimes(root) {
    root.querySelectorAll("time[data-local]").forEach((el) => {
      const date = new Date(el.getAttribute("datetime"));
      if (isNaN(date)) return;
      el.textContent = localTime(date) + " (" + relative(date - Date.now()) + ")";
      el.title = date.toString();
    });
  }

  function clockText(ms) {
    const s = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? h + ":" + pad(m) + ":" + pad(sec) : m + ":" + pad(sec);
  }

  function tickTimers() {
    const now = Date.now();
    document.querySelectorAll("[data-timer]").forEach((el) => {
      const out = el.querySelector("[data-countdown]");
      const due = Date.parse(el.dataset.due);
      const start = Date.parse(el.dataset.start);
      if (el.dataset.met) {
        const met = Date.parse(el.dataset.met);
        out.textContent = met <= due ? "met " + localTime(new Date(met)) : clockText(met - due) + " late";
        return;
      }
      const left = due - now;
      el.classList.toggle("state-breached", left <= 0);
      el.classList.toggle("state-running", left > 0);
      el.classList.toggle("amber", left > 0 && left <= (due - start) / 5);
      out.textContent = left > 0 ? clockText(left) + " left" : "overdue " + clockText(left);
    });
  }

  function scrollTimeline() {
    const list = document.getElementById("icc-timeline");
    if (list) list.scrollTop = list.scrollHeight;
  }

  function setUp(root) {
    renderTimes(root);
    tickTimers();
    const tz = document.querySelector("#icc-entry input[name=tz]");
    if (tz) tz.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  }

  document.addEventListener("DOMContentLoaded", () => {
    setUp(document);
    scrollTimeline();
    setInterval(tickTimers, 1000);
    setInterval(() => renderTimes(document), 30000);
  });

  document.addEventListener("htmx:afterSettle", (event) => {
    setUp(document);
    const state = document.getElementById("icc-state");
    if (state && state.dataset.title) document.title = state.dataset.title;
    if (event.target.id === "icc-timeline") scrollTimeline();
  });

  // The entry box: Enter posts, Shift+Enter is a new line; after a post it is cleared, gets a
  // fresh duplicate-submit key and keeps focus. On an error it keeps the text.
  document.addEventListener("keydown", (event) => {
    const box = document.getElementById("icc-entry-body");
    if (!box) return;
    if (event.target === box && event.key === "Escape") {
      box.blur();
      return;
    }
    if (event.target === box && event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (box.value.trim()) box.form.requestSubmit();
      return;
    }
    const typing = event.target.closest("input, textarea, select, [contenteditable]");
    if (!typing && !event.ctrlKey && !event.metaKey && !event.altKey && (event.key === "n" || event.key === "/")) {
      event.preventDefault();
      box.focus();
    }
  });

  document.addEventListener("htmx:afterRequest", (event) => {
    const form = event.detail.elt;
    if (!(form instanceof HTMLFormElement) || form.id !== "icc-entry") return;
    if (event.detail.successful) {
      form.body.value = "";
      form.at.value = "";
      form.client_key.value = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
      document.getElementById("icc-entry-error").innerHTML = "";
    }
    form.body.focus();
  });

  document.addEventListener("click", (event) => {
    const dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) dismiss.closest(".flash").remove();
  });
})();
