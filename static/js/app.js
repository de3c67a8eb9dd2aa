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
    showUrgencyInTitle(now);
  }

  // An incident page's tab says its severity and its most urgent timer: "SEV1 ⏱ 4:12 · INC-…".
  function showUrgencyInTitle(now) {
    const state = document.getElementById("icc-state");
    if (!state || !state.dataset.severity) return;
    const urgent = state.querySelector("[data-most-urgent]");
    let timer = "";
    if (urgent && !urgent.dataset.met) {
      const left = Date.parse(urgent.dataset.due) - now;
      timer = " ⏱ " + (left > 0 ? clockText(left) : "overdue " + clockText(left));
    }
    document.title = state.dataset.severity + timer + " · " + state.dataset.title;
  }

  // Boxes that scroll (wide tables, long code, diagrams) take keyboard focus while they do, so
  // they can be scrolled without a mouse; a box with a link or button inside is reached anyway.
  const SCROLL_BOXES = ".table-wrap, .table-scroll, pre, figure.diagram, dd.text";
  const FOCUSABLE = "a[href], button, input, select, textarea, summary, [tabindex]";
  function reachScrollBoxes(root) {
    root.querySelectorAll(SCROLL_BOXES).forEach((box) => {
      const scrolls = box.scrollWidth > box.clientWidth + 1 || box.scrollHeight > box.clientHeight + 1;
      if (scrolls && !box.hasAttribute("tabindex") && !box.querySelector(FOCUSABLE)) {
        box.tabIndex = 0;
        box.setAttribute("data-scroll-focus", "");
      } else if (!scrolls && box.hasAttribute("data-scroll-focus")) {
        box.removeAttribute("tabindex");
        box.removeAttribute("data-scroll-focus");
      }
    });
  }

  // On a narrow screen the navigation folds behind a Menu button (without this script it
  // stays open).
  function setUpMenu() {
    const toggle = document.querySelector(".menu-toggle");
    if (!toggle) return;
    const bar = toggle.closest(".topbar");
    bar.classList.add("collapsible");
    toggle.hidden = false;
    toggle.addEventListener("click", () => {
      toggle.setAttribute("aria-expanded", String(bar.classList.toggle("open")));
    });
  }

  function scrollTimeline() {
    const list = document.getElementById("icc-timeline");
    if (list) list.scrollTop = list.scrollHeight;
  }

  // Runbooks: diagrams, copy buttons, and a table of contents that follows the reader.
  // Mermaid draws in a sandboxed frame of its own (static/js/diagram-renderer.js), loaded only
  // when a page has a diagram: laying a diagram out needs inline styles, which this page's
  // Content-Security-Policy forbids. The SVG it sends back is put in place with its styles
  // moved into the CSS object model (constructed style sheets and element.style), which that
  // policy allows, since no markup is parsed as style.
  let renderer = null;
  function diagramRenderer() {
    if (!renderer) {
      renderer = new Promise((resolve, reject) => {
        const frame = document.createElement("iframe");
        frame.className = "diagram-renderer";
        frame.title = "Diagram renderer";
        frame.tabIndex = -1;
        frame.setAttribute("aria-hidden", "true");
        frame.setAttribute("sandbox", "allow-scripts");
        frame.src = "/runbooks/diagram-renderer";
        const waiting = new Map();
        const draw = (id, source) =>
          new Promise((done, failed) => {
            waiting.set(id, { done, failed });
            frame.contentWindow.postMessage({ id, source }, "*");
          });
        const late = setTimeout(() => reject(new Error("could not load the diagram library")), 15000);
        window.addEventListener("message", (event) => {
          if (event.source !== frame.contentWindow || !event.data) return;
          const answer = event.data;
          if (answer.ready || answer.failed) {
            clearTimeout(late);
            answer.ready ? resolve(draw) : reject(new Error(answer.failed));
            return;
          }
          const asker = waiting.get(answer.id);
          if (!asker) return;
          waiting.delete(answer.id);
          typeof answer.svg === "string" ? asker.done(answer) : asker.failed(new Error(String(answer.error)));
        });
        document.body.appendChild(frame);
      });
    }
    return renderer;
  }

  // The diagrams' style sheets, by diagram id (mermaid scopes each one to its SVG's id).
  const diagramSheets = new Map();
  function diagramElement(id, drawn) {
    const svg = new DOMParser().parseFromString(drawn.svg, "text/html").body.querySelector("svg");
    if (!svg) throw new Error("the diagram library drew nothing");
    document.adoptNode(svg);
    [svg, ...svg.querySelectorAll("[data-icc-style]")].forEach((el) => {
      if (!el.hasAttribute("data-icc-style")) return;
      el.style.cssText = el.getAttribute("data-icc-style");
      el.removeAttribute("data-icc-style");
    });
    diagramSheets.forEach((_, shown) => {
      if (!document.getElementById(shown)) diagramSheets.delete(shown);
    });
    diagramSheets.set(
      id,
      drawn.sheets.map((css) => {
        const sheet = new CSSStyleSheet();
        sheet.replaceSync(css);
        return sheet;
      })
    );
    document.adoptedStyleSheets = Array.from(diagramSheets.values()).flat();
    return svg;
  }

  let diagramCount = 0;
  async function renderDiagrams(root) {
    const blocks = Array.from(root.querySelectorAll("pre.mermaid:not([data-done])"));
    if (!blocks.length) return;
    blocks.forEach((b) => b.setAttribute("data-done", "pending"));
    let draw;
    try {
      draw = await diagramRenderer();
    } catch (err) {
      blocks.forEach((b) => showDiagramError(b, err.message));
      return;
    }
    for (const block of blocks) {
      const id = "icc-diagram-" + ++diagramCount;
      try {
        const figure = document.createElement("figure");
        figure.className = "diagram";
        figure.append(diagramElement(id, await draw(id, block.textContent)));
        block.replaceWith(figure);
      } catch (err) {
        showDiagramError(block, (err && err.message) || String(err));
      }
    }
    reachScrollBoxes(root);
  }

  function showDiagramError(block, message) {
    block.setAttribute("data-done", "error");
    const note = document.createElement("p");
    note.className = "diagram-error";
    note.textContent = "This diagram could not be drawn: " + message.split("\n")[0];
    block.before(note);
  }

  function addCopyButtons(root) {
    root.querySelectorAll(".doc div.code:not([data-copy])").forEach((wrap) => {
      wrap.setAttribute("data-copy", "");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy small";
      button.textContent = "Copy";
      button.addEventListener("click", async () => {
        const code = wrap.querySelector("pre");
        try {
          await navigator.clipboard.writeText(code.innerText);
          button.textContent = "Copied";
        } catch (err) {
          button.textContent = "Select and copy";
        }
        setTimeout(() => (button.textContent = "Copy"), 1500);
      });
      wrap.prepend(button);
    });
  }

  function followToc(root) {
    root.querySelectorAll(".reader").forEach((reader) => {
      if (reader.dataset.follow) return;
      reader.dataset.follow = "1";
      const links = new Map();
      reader.querySelectorAll(".toc a").forEach((a) => links.set(a.getAttribute("href").slice(1), a));
      if (!links.size || !("IntersectionObserver" in window)) return;
      const observer = new IntersectionObserver((seen) => {
        seen.forEach((item) => {
          if (!item.isIntersecting) return;
          const link = links.get(item.target.id);
          if (!link) return;
          reader.querySelectorAll(".toc a.current").forEach((a) => a.classList.remove("current"));
          link.classList.add("current");
        });
      }, { root: reader.closest("dialog") || null, rootMargin: "0px 0px -70% 0px" });
      reader.querySelectorAll(".doc h1[id], .doc h2[id], .doc h3[id]").forEach((h) => observer.observe(h));
    });
  }

  function openModal() {
    const dialog = document.getElementById("icc-modal");
    if (!dialog || !dialog.firstElementChild) return;
    // Rendered open by the server (a deep link): reopen as a modal without firing "close".
    if (dialog.open) dialog.removeAttribute("open");
    dialog.showModal();
    setUp(dialog);
    let target = null;
    try {
      target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
    } catch (err) {
      target = null; // a malformed fragment: open at the top
    }
    if (target && dialog.contains(target)) target.scrollIntoView();
  }

  function setUp(root) {
    if (window.matchMedia("(max-width: 900px)").matches) {
      root.querySelectorAll("details.toc-box[open]").forEach((d) => d.removeAttribute("open"));
    }
    renderTimes(root);
    tickTimers();
    renderDiagrams(root);
    addCopyButtons(root);
    followToc(root);
    reachScrollBoxes(root);
    const tz = document.querySelector("#icc-entry input[name=tz]");
    if (tz) tz.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  }

  // Live updates: the server says "something changed" over SSE (from whichever replica
  // committed it) and the page fetches its current state. If SSE is not possible, poll.
  const live = { pending: false, timer: null, polling: null };

  function busyInside(target) {
    const active = document.activeElement;
    if (target.contains(active) && active.matches("input, textarea, select") && active.value) return true;
    return !!target.querySelector("details[open]");
  }

  function refreshLive() {
    const el = document.querySelector("[data-live]");
    const target = el && document.querySelector(el.dataset.target);
    if (!target || !window.htmx) return;
    if (busyInside(target)) {
      live.pending = true; // someone is typing or has a menu open: refresh when they are done
      return;
    }
    live.pending = false;
    const url = el.dataset.refresh || location.pathname + location.search;
    window.htmx.ajax("GET", url, { target: el.dataset.target, swap: "outerHTML", headers: { "X-ICC-Live": "1" } });
  }

  // The answer may arrive after someone started typing or opened a menu: keep their work and
  // refresh once they are done.
  document.addEventListener("htmx:beforeSwap", (event) => {
    const headers = event.detail.requestConfig && event.detail.requestConfig.headers;
    if (!headers || headers["X-ICC-Live"] !== "1") return;
    const el = document.querySelector("[data-live]");
    const target = el && document.querySelector(el.dataset.target);
    if (target && busyInside(target)) {
      event.detail.shouldSwap = false;
      live.pending = true;
    }
  });

  function scheduleRefresh() {
    clearTimeout(live.timer);
    live.timer = setTimeout(refreshLive, 150);
  }

  function startPolling() {
    if (!live.polling) live.polling = setInterval(refreshLive, 10000);
  }

  function connectLive() {
    const el = document.querySelector("[data-live]");
    if (!el) return;
    if (!window.EventSource) return startPolling();
    const source = new EventSource(el.dataset.live);
    source.addEventListener("change", scheduleRefresh);
    // The first resync only confirms the page just rendered; later ones follow a reconnect.
    let rendered = true;
    source.addEventListener("resync", () => {
      if (rendered) {
        rendered = false;
        return;
      }
      scheduleRefresh();
    });
    source.addEventListener("presence", scheduleRefresh);
    source.addEventListener("open", () => {
      clearInterval(live.polling);
      live.polling = null;
    });
    source.addEventListener("error", () => {
      // The browser reconnects by itself (sending Last-Event-ID); poll meanwhile.
      startPolling();
    });
  }

  document.addEventListener("focusout", () => {
    if (live.pending) setTimeout(scheduleRefresh, 300);
  });
  document.addEventListener("toggle", () => {
    if (live.pending) scheduleRefresh();
  }, true);

  document.addEventListener("DOMContentLoaded", () => {
    setUp(document);
    setUpMenu();
    connectLive();
    const dialog = document.getElementById("icc-modal");
    if (dialog && dialog.hasAttribute("data-deep-link")) openModal();
    if (dialog) dialog.addEventListener("close", () => {
      dialog.innerHTML = "";
      if (new URLSearchParams(location.search).has("runbook")) history.replaceState(null, "", location.pathname);
    });
    scrollTimeline();
    setInterval(tickTimers, 1000);
    setInterval(() => renderTimes(document), 30000);
    let resized = null;
    window.addEventListener("resize", () => {
      clearTimeout(resized);
      resized = setTimeout(() => reachScrollBoxes(document), 200);
    });
  });

  document.addEventListener("htmx:afterSettle", (event) => {
    if (event.target.id === "icc-modal") {
      openModal();
      return;
    }
    setUp(document);
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
    const shape = event.target.closest("[data-template]");
    if (shape) {
      const box = shape.closest("form").querySelector("textarea[name=body]");
      box.value = shape.dataset.template;
      box.focus();
      return;
    }
    if (event.target.closest("[data-close-modal]")) {
      const dialog = document.getElementById("icc-modal");
      if (dialog && dialog.open) dialog.close();
      return;
    }
    const dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) dismiss.closest(".flash").remove();
  });
})();
