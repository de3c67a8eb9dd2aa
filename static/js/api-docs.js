// Swagger UI at /api/docs, from the pinned npm package (static/package.json), started from this
// file rather than an inline script, so the page keeps the site's Content-Security-Policy.
(function () {
  "use strict";
  const root = document.getElementById("swagger-ui");
  const SwaggerUIBundle = window.SwaggerUIBundle;
  SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
