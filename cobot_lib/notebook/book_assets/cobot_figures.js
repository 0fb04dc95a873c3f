/* Draw each stored plotly figure of the book with the local plotly.js; until then (or without
   JavaScript) the static picture stored beside it stays. Written for cobot_lib.notebook.book. */
(function () {
  "use strict";
  function draw(block) {
    var spec = JSON.parse(block.querySelector("script.cobot-figure-spec").textContent);
    var live = block.querySelector(".cobot-figure-live");
    var layout = Object.assign({}, spec.layout || {});
    var config = Object.assign({ responsive: true, displaylogo: false }, spec.config || {});
    return window.Plotly.newPlot(live, spec.data || [], layout, config).then(function () {
      var picture = block.querySelector("img.cobot-figure-static");
      if (picture) { picture.remove(); }
      block.classList.add("cobot-figure-drawn");
    });
  }
  function drawAll() {
    if (!window.Plotly) { return; }  /* no plotly.js: the static pictures stay */
    document.querySelectorAll(".cobot-figure").forEach(function (block) {
      draw(block).catch(function (err) { console.warn("figure not drawn:", err); });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
