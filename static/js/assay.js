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

  // "Select all" ticks every row's checkbox of the same name in its form (rows may sit outside
  // the form element and join it with form="...": form.elements has them all).
  document.addEventListener("change", function (event) {
    var all = event.target.closest && event.target.closest("[data-select-all]");
    if (!all) return;
    Array.from(all.form.elements).forEach(function (box) {
      if (box.type === "checkbox" && box.name === all.dataset.selectAll) box.checked = all.checked;
    });
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

  // -- confirmations: one accessible <dialog> (base.html) ---------------------------------------
  // Its body is the confirmation page's own explanation, fetched from the server, so the words
  // are the same with or without JavaScript. Enter confirms (the focused button), Escape cancels.
  var dialog = document.getElementById("confirm-dialog");
  var onConfirm = null;
  function showDialog(body, label, kind, then) {
    var box = document.getElementById("confirm-dialog-body");
    var yes = document.getElementById("confirm-dialog-yes");
    if (typeof body === "string") {
      box.innerHTML = '<h2 id="confirm-dialog-title"></h2>';
      box.firstChild.textContent = body;
    } else {
      box.replaceChildren(body);
    }
    yes.textContent = label || "Confirm";
    yes.className = "btn btn-primary" + (kind ? " act-" + kind : "");
    onConfirm = then;
    dialog.returnValue = "";
    if (!dialog.open) dialog.showModal();
    yes.focus();
  }
  if (dialog) {
    dialog.addEventListener("close", function () {
      var then = onConfirm;
      onConfirm = null;
      if (dialog.returnValue === "confirm" && then) then();
    });
  }
  // The server's explanation (the confirmation page's fragment); a redirect means the action is
  // no longer possible (the message waits on the page it leads to).
  function explain(url, init) {
    init = init || {};
    init.headers = Object.assign({ "HX-Request": "true" }, init.headers || {});
    init.credentials = "same-origin";
    return fetch(url, init).then(function (response) {
      var redirect = response.headers.get("HX-Redirect");
      if (redirect) { window.location.assign(redirect); throw new Error("redirected"); }
      if (!response.ok) { window.location.assign(url); throw new Error(String(response.status)); }
      return response.text();
    }).then(function (html) {
      var wrapper = document.createElement("div");
      wrapper.innerHTML = html;
      return wrapper;
    });
  }
  // Run actions (htmx forms marked data-confirm-url).
  document.addEventListener("htmx:confirm", function (event) {
    var form = event.detail.elt;
    if (!dialog || !form.dataset || !form.dataset.confirmUrl) return;
    event.preventDefault();
    explain(form.dataset.confirmUrl).then(function (body) {
      showDialog(body, form.dataset.confirmLabel, form.querySelector("button").className.match(/act-(\w+)/)[1],
        function () { event.detail.issueRequest(true); });
    }).catch(function () {});
  });
  // Plain buttons that ask a question (data-confirm="..."): the question in the dialog.
  var confirmed = null;
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (!button || button === confirmed) return;
    event.preventDefault();
    if (!dialog) { if (window.confirm(button.dataset.confirm)) { confirmed = button; button.click(); } return; }
    showDialog(button.dataset.confirm, button.textContent.trim(), "", function () {
      confirmed = button;
      button.click();
      confirmed = null;
    });
  });
  // Forms that preview what they will do (the bulk actions): the server's preview in the dialog.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!dialog || !form.hasAttribute("data-confirm-preview") || form.dataset.confirmed) return;
    event.preventDefault();
    var submitter = event.submitter;
    var data = new FormData(form, submitter);
    explain(form.getAttribute("action"), { method: "POST", body: data,
      headers: { "X-CSRFToken": data.get("csrfmiddlewaretoken") } }).then(function (body) {
      var hasRuns = !body.querySelector(".nothing");
      var label = body.querySelector("h1").textContent.replace("?", "").trim();
      showDialog(body, hasRuns ? label : "Close", submitter ? submitter.value : "", hasRuns ? function () {
        var flag = document.createElement("input");
        flag.type = "hidden"; flag.name = "confirmed"; flag.value = "1";
        form.appendChild(flag);
        form.dataset.confirmed = "1";
        form.requestSubmit(submitter);
      } : null);
    }).catch(function () {});
  });

  // -- the heatmap: one tab stop, arrow keys inside (the ARIA grid pattern) --------------------
  function heatLinks(grid) {
    return Array.from(grid.querySelectorAll("[role=row]")).map(function (row) {
      return Array.from(row.querySelectorAll("[role=gridcell]")).map(function (cell) {
        return cell.querySelector("a");
      });
    });
  }
  function initHeatmap(grid) {
    var links = grid.querySelectorAll("a");
    if (!links.length) return;
    var current = grid.querySelector("[aria-selected=true] a") || links[links.length - 1];
    links.forEach(function (link) { link.tabIndex = link === current ? 0 : -1; });
  }
  var HEAT_MOVES = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
  document.addEventListener("keydown", function (event) {
    var grid = event.target.closest && event.target.closest("[data-heatmap]");
    if (!grid || event.target.tagName !== "A") return;
    var rows = heatLinks(grid), r = -1, c = -1;
    rows.forEach(function (row, i) { var j = row.indexOf(event.target); if (j >= 0) { r = i; c = j; } });
    if (r < 0) return;
    var next = null;
    if (event.key === "Home" || event.key === "End") {
      var row = rows[r].filter(Boolean);
      next = event.key === "Home" ? row[0] : row[row.length - 1];
    } else if (HEAT_MOVES[event.key]) {
      var dr = HEAT_MOVES[event.key][0], dc = HEAT_MOVES[event.key][1];
      for (var i = r + dr, j = c + dc; i >= 0 && i < rows.length && j >= 0 && j < rows[i].length; i += dr, j += dc) {
        if (rows[i][j]) { next = rows[i][j]; break; }
      }
    } else {
      return;
    }
    event.preventDefault();
    if (!next) return;
    event.target.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
  });

  // -- a searchable container picker over a <select multiple data-picker> ----------------------
  function initPicker(select) {
    if (!select.options.length) return;  // nothing catalogued: the help says to Sync first
    var picker = document.createElement("div");
    picker.className = "picker";
    var search = document.createElement("input");
    search.type = "search";
    search.placeholder = "Filter containers";
    search.setAttribute("aria-label", "Filter the containers by name");
    var count = document.createElement("p");
    count.className = "help";
    count.setAttribute("aria-live", "polite");
    var list = document.createElement("div");
    list.className = "picker-list";
    list.setAttribute("role", "group");
    var label = document.querySelector('label[for="' + select.id + '"]');
    if (label) list.setAttribute("aria-label", label.textContent);
    function counted() {
      var n = select.selectedOptions.length;
      count.textContent = n ? n + " of " + select.options.length + " selected" : "None selected: every container";
    }
    Array.from(select.options).forEach(function (option, i) {
      var row = document.createElement("label");
      row.className = "picker-item";
      var box = document.createElement("input");
      box.type = "checkbox";
      box.checked = option.selected;
      box.id = select.id + "-pick-" + i;
      box.addEventListener("change", function () { option.selected = box.checked; counted(); });
      row.appendChild(box);
      row.appendChild(document.createTextNode(" " + option.textContent));
      list.appendChild(row);
    });
    search.addEventListener("input", function () {
      var needle = search.value.toLowerCase();
      list.querySelectorAll(".picker-item").forEach(function (row) {
        row.hidden = needle && row.textContent.toLowerCase().indexOf(needle) < 0;
      });
    });
    picker.append(search, list, count);
    select.hidden = true;
    select.after(picker);
    if (label) label.htmlFor = search.id = select.id + "-search";
    counted();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-heatmap]").forEach(initHeatmap);
    document.querySelectorAll("select[multiple][data-picker]").forEach(initPicker);
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
      status === 404 ? "This Run is no longer available: it was deleted, or your access to it changed." :
      "The request failed (" + status + ").";
    var list = document.querySelector(".messages");
    // Several parts of a page poll the same Run: one message is enough.
    if (list && Array.from(list.children).some(function (li) { return li.textContent === text; })) return;
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
