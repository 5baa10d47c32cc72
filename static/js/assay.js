/* Assay: the little behaviour htmx does not cover. Every page also works without it. */
(function () {
  "use strict";

  // The same format as the server's ``duration`` filter.
  function formatDuration(total) {
    if (total < 10) return Math.max(0, total).toFixed(1) + "s";
    total = Math.floor(total);
    var h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    if (h) return h + "h " + pad(m) + "m " + pad(s) + "s";
    if (m) return m + "m " + pad(s) + "s";
    return s + "s";
  }

  // Durations of active Runs tick here, from the server's elapsed seconds at render time, so a
  // client clock that is off does not matter and the server is never asked for a second.
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-live-duration]").forEach(function (el) {
      if (!el.dataset.t0) el.dataset.t0 = String(now - Number(el.dataset.liveDuration) * 1000);
      el.textContent = formatDuration((now - Number(el.dataset.t0)) / 1000);
    });
  }
  setInterval(tick, 1000);

  // Activity rows expand in place; the fragment refreshes itself while the Run is active.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-expand]");
    if (!button || !window.htmx) return;
    event.preventDefault();
    var target = document.getElementById(button.getAttribute("aria-controls"));
    var open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", open ? "false" : "true");
    button.closest(".run").classList.toggle("is-open", !open);
    if (open) {
      target.innerHTML = "";
    } else {
      target.innerHTML = '<p class="muted loading-more">Loading…</p>';
      htmx.ajax("GET", button.dataset.expand, { target: target, swap: "innerHTML" });
    }
  });

  // An anomaly row opens its example records below it (a fragment of the anomaly's page).
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-expand-row]");
    if (!button || !window.htmx) return;
    event.preventDefault();
    var row = document.getElementById(button.getAttribute("aria-controls"));
    var open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", open ? "false" : "true");
    row.hidden = open;
    var cell = row.querySelector("td");
    if (open) {
      cell.innerHTML = "";
    } else {
      cell.innerHTML = '<p class="muted">Loading…</p>';
      htmx.ajax("GET", button.dataset.expandRow, { target: cell, swap: "innerHTML" });
    }
  });

  // "Select all" ticks every row's checkbox of the same name in its form.
  document.addEventListener("change", function (event) {
    var all = event.target.closest && event.target.closest("[data-select-all]");
    if (!all) return;
    all.form.querySelectorAll('input[type=checkbox][name="' + all.dataset.selectAll + '"]')
      .forEach(function (box) { box.checked = all.checked; });
  });

  // Tabs: without JavaScript every panel simply shows one after the other.
  function selectTab(tab) {
    var list = tab.closest("[role=tablist]");
    list.querySelectorAll("[role=tab]").forEach(function (other) {
      var selected = other === tab;
      other.setAttribute("aria-selected", selected ? "true" : "false");
      other.tabIndex = selected ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
    });
  }
  function initTabs(root) {
    root.querySelectorAll("[role=tablist]").forEach(function (list) {
      var current = list.querySelector("[aria-selected=true]") || list.querySelector("[role=tab]");
      if (current) selectTab(current);
    });
  }
  document.addEventListener("click", function (event) {
    var tab = event.target.closest("[role=tab]");
    if (tab) selectTab(tab);
  });
  document.addEventListener("keydown", function (event) {
    var tab = event.target.closest && event.target.closest("[role=tab]");
    if (!tab || (event.key !== "ArrowRight" && event.key !== "ArrowLeft")) return;
    var tabs = Array.from(tab.closest("[role=tablist]").querySelectorAll("[role=tab]"));
    var next = tabs[(tabs.indexOf(tab) + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    selectTab(next);
    next.focus();
  });
  document.addEventListener("DOMContentLoaded", function () {
    initTabs(document);
    var log = document.getElementById("log-lines");
    if (log) log.scrollTop = log.scrollHeight;
  });

  // Polls run only while the tab is visible. Checked here rather than in an hx-trigger filter,
  // which htmx evaluates as code: the Content-Security-Policy allows no eval.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var trigger = event.detail.elt.getAttribute("hx-trigger") || "";
    if (trigger.indexOf("every ") === 0 && document.visibilityState !== "visible") {
      event.preventDefault();
    }
  });

  // Buttons that ask first (no inline onclick: the Content-Security-Policy forbids it).
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });

  // The log follows new lines while the reader sits at its bottom.
  var stickToBottom = false;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var log = event.detail.target;
    if (log && log.id === "log-lines") {
      stickToBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var log = event.detail.target;
    if (log && log.id === "log-lines" && stickToBottom) log.scrollTop = log.scrollHeight;
  });

  // A refused htmx request (403, 404, 409...) would otherwise fail silently.
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    var source = event.detail.elt;
    if (status === 404 && source && source.hasAttribute("hx-trigger")) {
      // The Run was deleted (or hidden) meanwhile: stop polling it; a detached copy of the
      // element ends htmx's timer, and the clone keeps what was last shown.
      var frozen = source.cloneNode(true);
      ["hx-get", "hx-trigger"].forEach(function (name) { frozen.removeAttribute(name); });
      source.replaceWith(frozen);
    }
    var text = status === 403 ? "You are not allowed to do this." :
      status === 404 ? "This Run no longer exists." : "The request failed (" + status + ").";
    var list = document.querySelector(".messages");
    if (!list) {
      list = document.createElement("ul");
      list.className = "messages";
      list.setAttribute("role", "status");
      document.getElementById("main").prepend(list);
    }
    var item = document.createElement("li");
    item.className = "message message-error";
    item.textContent = text;
    list.appendChild(item);
  });
})();
