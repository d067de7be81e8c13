// The console's own few lines: ticking durations, ended rows leaving the live table, the charts, and
// reloading a page whose stream fell too far behind. Everything else is htmx and its SSE extension.
(function () {
  "use strict";
  var KEEP_ENDED_MS = 30000;

  function mmss(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var m = Math.floor(s / 60);
    s = s % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var since = Date.parse(el.dataset.since);
      if (isNaN(since)) { return; }
      var ended = el.dataset.ended ? Date.parse(el.dataset.ended) : NaN;
      var cell = el.classList.contains("duration") ? el : el.querySelector(".duration");
      if (!cell) { return; }
      if (!isNaN(ended)) {
        cell.textContent = mmss(ended - since);
        if (el.tagName === "TR" && now - ended > KEEP_ENDED_MS) { el.remove(); }
      } else {
        cell.textContent = mmss(now - since);
      }
    });
    var count = document.getElementById("live-count");
    if (count) {
      var live = document.querySelectorAll("#live-rows tr:not(.phase-ended)").length;
      count.textContent = "(" + live + ")";
    }
  }

  var plots = {};

  function draw(data) {
    if (typeof uPlot === "undefined") { return; }
    var width = Math.min(560, Math.max(320, window.innerWidth / 2 - 60));
    var series = {
      "chart-calls": [[data.t, data.calls], [{}, { label: "calls", stroke: "#0b5cad", fill: "rgba(11,92,173,.1)" }]],
      "chart-latency": [[data.t, data.p50, data.p95],
        [{}, { label: "p50 ms", stroke: "#1a7f37", spanGaps: true, points: { show: true } },
        { label: "p95 ms", stroke: "#cf222e", spanGaps: true, points: { show: true } }]],
    };
    Object.keys(series).forEach(function (id) {
      var el = document.getElementById(id);
      if (!el) { return; }
      if (plots[id]) {
        plots[id].setData(series[id][0]);
      } else {
        plots[id] = new uPlot({ width: width, height: 180, series: series[id][1], scales: { x: { time: true } } },
          series[id][0], el);
      }
    });
  }

  document.addEventListener("htmx:sseMessage", function (e) {
    var message = e.detail;
    if (!message) { return; }
    if (message.type === "charts") { draw(JSON.parse(message.data)); }
    if (message.type === "reload") { window.location.reload(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var initial = document.getElementById("charts-data");
    if (initial) { draw(JSON.parse(initial.dataset.charts)); }
    tick();
    window.setInterval(tick, 1000);
  });
})();
