// The status page's refresh: fetch /status.json every data-refresh seconds and redraw.
// Same-origin file (no inline script) so that it runs under a strict CSP; DOM built with
// textContent only (no innerHTML), so no check text can inject markup.
(function () {
  "use strict";
  var root = document.getElementById("status-root");
  if (!root) { return; }
  var source = root.getAttribute("data-source");
  var seconds = Math.max(1, parseInt(root.getAttribute("data-refresh"), 10) || 10);
  var refreshes = 0;
  var SKIP = { status: 1, response_time_ms: 1, critical: 1, error: 1, plugin: 1 };

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function setText(id, text) {
    var node = document.getElementById(id);
    if (node) { node.textContent = text === undefined || text === null ? "" : String(text); }
    return node;
  }

  // The same formatting as the server's first paint (status_page.shown).
  function show(value) {
    if (value === null || value === undefined) { return ""; }
    if (typeof value === "object") { return JSON.stringify(value); }
    return String(value);
  }

  function renderPanels(panels) {
    var group = document.getElementById("panels");
    var cards = document.createDocumentFragment();
    panels.forEach(function (p) {
      var card = el("section", "card");
      card.setAttribute("data-panel", p.check);
      card.appendChild(el("h2", null, p.title));
      card.appendChild(el("p", "big status-" + p.status, p.text));
      if (p.percent !== null) {
        var meter = el("meter");
        meter.min = 0; meter.max = 100; meter.optimum = 0;
        if (p.warning_percent !== null) { meter.low = p.warning_percent; }
        if (p.critical_percent !== null) { meter.high = p.critical_percent; }
        meter.value = p.percent;
        card.appendChild(meter);
      }
      if (p.detail) { card.appendChild(el("p", "muted", p.detail)); }
      cards.appendChild(card);
    });
    group.replaceChildren(cards);
  }

  function renderChecks(checks) {
    var body = document.querySelector("#checks tbody");
    var rows = document.createDocumentFragment();
    Object.keys(checks).forEach(function (name) {
      var c = checks[name];
      var tr = el("tr");
      tr.setAttribute("data-check", name);
      var first = el("td");
      first.appendChild(el("strong", null, name));
      if (c.critical) { first.appendChild(document.createTextNode(" ")); first.appendChild(el("span", "tag", "critical")); }
      first.appendChild(el("br"));
      first.appendChild(el("small", null, c.plugin || ""));
      tr.appendChild(first);
      tr.appendChild(el("td", "status-" + c.status, c.status));
      tr.appendChild(el("td", "num", show(c.response_time_ms) + " ms"));
      var details = el("td", "details");
      if (c.error) { details.appendChild(el("div", "error", c.error)); }
      Object.keys(c).forEach(function (key) {
        if (SKIP[key]) { return; }
        var fig = el("span", "fig");
        fig.appendChild(el("span", "k", key));
        fig.appendChild(document.createTextNode(" " + show(c[key])));
        details.appendChild(fig);
      });
      tr.appendChild(details);
      rows.appendChild(tr);
    });
    body.replaceChildren(rows);
  }

  function renderPlugins(plugins) {
    var body = document.querySelector("#plugins tbody");
    var rows = document.createDocumentFragment();
    plugins.forEach(function (p) {
      var tr = el("tr");
      tr.setAttribute("data-plugin", p.name);
      tr.appendChild(el("td", null, p.name));
      tr.appendChild(el("td", null, p.version || ""));
      var status = el("td", "status-" + p.status, p.status);
      if (p.error) { status.appendChild(el("div", "error", p.error)); }
      tr.appendChild(status);
      tr.appendChild(el("td", "wide muted", p.distribution || ""));
      rows.appendChild(tr);
    });
    body.replaceChildren(rows);
  }

  function render(data) {
    var h = data.health;
    var overall = setText("overall", h.status);
    overall.className = "badge status-" + h.status;
    setText("timestamp", h.timestamp);
    setText("age", show(h.age_seconds));
    setText("pid", data.pid);
    setText("sum-total", h.summary.total_checks);
    setText("sum-passed", h.summary.passed);
    setText("sum-warnings", h.summary.warnings);
    setText("sum-failed", h.summary.failed);
    renderChecks(h.checks);
    renderPanels(data.panels);
    setText("workers-final", data.workers.final);
    setText("workers-reason", "decided by " + data.workers.decided_by + ": " + data.workers.reason);
    renderPlugins(data.plugins);
  }

  function refresh() {
    var status = document.getElementById("refreshed");
    fetch(source, { headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        render(data);
        refreshes += 1;
        status.setAttribute("data-refreshes", String(refreshes));
        status.className = "refresh";
        status.textContent = "Refreshed at " + new Date().toLocaleTimeString() + " (every " + seconds + " s).";
      })
      .catch(function (error) {
        status.className = "refresh failed";
        status.textContent = "Refresh failed (" + error.message + "); retrying in " + seconds + " s.";
      })
      .then(function () { window.setTimeout(refresh, seconds * 1000); });
  }

  // The data of the first paint (data-initial) drawn as a refresh would draw it: the
  // browser test compares the two (the server's template and this file format alike).
  window.stevedoresStatus = {
    render: render,
    initial: function () { return JSON.parse(root.getAttribute("data-initial")); }
  };
  window.setTimeout(refresh, seconds * 1000);
}());
