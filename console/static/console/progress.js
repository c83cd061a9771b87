// Refreshes a running mailing's progress from its JSON endpoint every few seconds, without a reload.
(function () {
  "use strict";
  var console_ = document.getElementById("mailing-console");
  if (!console_ || !console_.dataset.pollUrl) return;
  var EVERY_MS = 3000;

  function show(progress) {
    console_.querySelector("[data-progress-bar]").innerHTML = progress.bar;
    console_.querySelector("[data-progress-percent]").textContent = progress.percent;
    console_.querySelector("[data-progress-rate]").textContent = progress.send_rate_per_second;
    console_.querySelector("[data-progress-finish]").textContent = progress.estimated_finish;
    console_.querySelector("[data-progress-finish-line]").hidden = !progress.estimated_finish;
    var state = console_.querySelector("[data-progress-state]");
    if (state.dataset.state !== progress.state) {
      state.dataset.state = progress.state;
      state.className = "state state-" + progress.state;
      state.textContent = progress.state.charAt(0).toUpperCase() + progress.state.slice(1);
    }
    Object.keys(progress.counts).forEach(function (key) {
      var cell = console_.querySelector('[data-count="' + key + '"]');
      if (cell) cell.textContent = progress.counts[key];
    });
  }

  function poll() {
    fetch(console_.dataset.pollUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (progress) { if (progress) show(progress); })
      .catch(function () { /* a missed refresh is retried on the next tick */ })
      .finally(function () { setTimeout(poll, EVERY_MS); });
  }

  setTimeout(poll, EVERY_MS);
})();
