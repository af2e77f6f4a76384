// /live: applies the monitor's WebSocket updates to the host table and the
// message stream, and filters rows by state and text.
(function () {
  "use strict";
  var tbody = document.querySelector("#hosts tbody");
  var stream = document.getElementById("messages");
  var conn = document.getElementById("conn");
  var fState = document.getElementById("f-state");
  var fText = document.getElementById("f-text");
  var MAX_MESSAGES = 100;

  function rowOf(name) {
    return tbody.querySelector('tr[data-host="' + CSS.escape(name) + '"]');
  }
  function cell(tr, k) { return tr.querySelector('[data-k="' + k + '"]'); }
  function badge(cls, text, title) {
    var s = document.createElement("span");
    s.className = "badge " + cls;
    s.textContent = text;
    if (title) s.title = title;
    return s;
  }
  function newRow(name) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-host", name);
    ["reach", "name", "source", "address", "rtt", "seen", "alerts"].forEach(function (k) {
      var td = document.createElement("td");
      td.setAttribute("data-k", k);
      if (k === "rtt") td.className = "num";
      tr.appendChild(td);
    });
    var a = document.createElement("a");
    a.href = "/hosts/" + encodeURIComponent(name);
    a.textContent = name;
    cell(tr, "name").appendChild(a);
    // keep rows sorted by name
    var rows = tbody.rows, i;
    for (i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-host") > name) break;
    }
    tbody.insertBefore(tr, rows[i] || null);
    return tr;
  }
  function applyHost(h) {
    var tr = rowOf(h.n);
    if (h.gone) { if (tr) tr.remove(); return; }
    if (!tr) tr = newRow(h.n);
    tr.setAttribute("data-reach", h.r);
    tr.setAttribute("data-worst", h.w);
    var rc = cell(tr, "reach");
    rc.replaceChildren(badge("r-" + h.r, h.r, h.why || ""));
    cell(tr, "source").textContent = h.src || "";
    cell(tr, "address").textContent = h.addr || "";
    cell(tr, "rtt").textContent = h.rtt ? h.rtt.toFixed(1) + " ms" : "—";
    var seen = cell(tr, "seen");
    seen.setAttribute("data-ts", h.ls || 0);
    seen.textContent = window.mbAgo ? window.mbAgo(h.ls) : "";
    var w = (h.w || "OK").toLowerCase();
    cell(tr, "alerts").replaceChildren(badge("l-" + w, h.a ? h.a + " " + w : "ok"));
    filterRow(tr);
  }
  function addMessage(m) {
    var li = document.createElement("li");
    var t = document.createElement("time");
    var d = new Date(m.t);
    t.dateTime = d.toISOString();
    t.textContent = d.toLocaleTimeString([], {hour12: false});
    t.title = d.toLocaleString();
    li.appendChild(t);
    li.appendChild(document.createTextNode(" "));
    var k = document.createElement("span");
    k.className = "kind";
    k.textContent = m.k;
    li.appendChild(k);
    li.appendChild(document.createTextNode(" "));
    if (m.h) {
      var a = document.createElement("a");
      a.href = "/hosts/" + encodeURIComponent(m.h);
      a.textContent = m.h;
      li.appendChild(a);
      li.appendChild(document.createTextNode(" "));
    }
    var s = document.createElement("span");
    s.className = "txt";
    s.textContent = m.x || "";
    li.appendChild(s);
    stream.insertBefore(li, stream.firstChild);
    while (stream.children.length > MAX_MESSAGES) stream.lastChild.remove();
  }
  function filterRow(tr) {
    var st = fState.value, q = fText.value.trim().toLowerCase();
    var ok = true;
    if (st === "alerting") ok = tr.getAttribute("data-worst") !== "OK";
    else if (st) ok = tr.getAttribute("data-reach") === st;
    if (ok && q) ok = tr.textContent.toLowerCase().indexOf(q) >= 0;
    tr.hidden = !ok;
  }
  function filterAll() {
    var shown = 0;
    Array.prototype.forEach.call(tbody.rows, function (tr) { filterRow(tr); if (!tr.hidden) shown++; });
    document.getElementById("count").textContent = shown + " of " + tbody.rows.length;
    document.getElementById("empty").hidden = shown > 0;
  }
  fState.addEventListener("change", filterAll);
  fText.addEventListener("input", filterAll);

  var retry = 1000;
  function connect() {
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    var ws = new WebSocket(proto + "//" + location.host + "/ws");
    ws.onopen = function () { conn.textContent = "live"; conn.className = "conn live"; retry = 1000; };
    ws.onmessage = function (ev) {
      var f = JSON.parse(ev.data);
      (f.hosts || []).forEach(applyHost);
      (f.msgs || []).forEach(addMessage);
      if (f.hosts && f.hosts.length) filterAll();
      document.body.setAttribute("data-frames", String(Number(document.body.getAttribute("data-frames") || 0) + 1));
    };
    ws.onclose = function (ev) {
      conn.textContent = "disconnected, retrying…";
      conn.className = "conn lost";
      if (ev.code === 1008) { location.href = "/login?next=/live"; return; }
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }
  filterAll();
  connect();
})();
