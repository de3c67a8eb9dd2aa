// Draws mermaid diagrams for the page that embeds this document (static/js/app.js). Mermaid
// styles its SVG with <style> elements and style attributes while it lays a diagram out, which
// the pages' Content-Security-Policy forbids. This document alone allows them: it holds nothing
// but the diagram source it is sent, and it runs in a sandboxed frame (an opaque origin), so
// nothing drawn here can reach the page, its cookies or its tokens. The page gets the SVG
// without inline styles: the style sheets apart, and each style attribute as data-icc-style,
// which the page applies through the CSS object model (its policy allows that).
(function () {
  "use strict";

  const page = window.parent;
  if (page === window) return;
  if (!window.mermaid) {
    page.postMessage({ failed: "could not load the diagram library" }, "*");
    return;
  }
  const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
  // The dark theme's edge labels (#ccc on #585858) fall short of 4.5:1; on the page's dark
  // line colour they read at 7.9:1.
  window.mermaid.initialize({
    startOnLoad: false,
    securityLevel: "strict",
    theme: dark ? "dark" : "default",
    themeVariables: dark ? { edgeLabelBackground: "#2c333d" } : {},
  });

  function withoutInlineStyles(markup) {
    const svg = new DOMParser().parseFromString(markup, "text/html").body.querySelector("svg");
    if (!svg) throw new Error("the diagram library drew nothing");
    const sheets = Array.from(svg.querySelectorAll("style"), (el) => {
      el.remove();
      return el.textContent;
    });
    [svg, ...svg.querySelectorAll("[style]")].forEach((el) => {
      if (!el.hasAttribute("style")) return;
      el.setAttribute("data-icc-style", el.getAttribute("style"));
      el.removeAttribute("style");
    });
    return { svg: svg.outerHTML, sheets };
  }

  let drawing = Promise.resolve();
  window.addEventListener("message", (event) => {
    if (event.source !== page) return;
    const { id, source } = event.data || {};
    if (typeof id !== "string" || typeof source !== "string") return;
    // One at a time, in the order asked: mermaid lays out in a shared scratch element.
    drawing = drawing.then(async () => {
      try {
        const { svg } = await window.mermaid.render(id, source);
        page.postMessage({ id, ...withoutInlineStyles(svg) }, event.origin);
      } catch (err) {
        page.postMessage({ id, error: (err && err.message) || String(err) }, event.origin);
      }
    });
  });
  page.postMessage({ ready: true }, "*");
})();
