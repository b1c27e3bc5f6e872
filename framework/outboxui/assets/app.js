// Live refresh of the overview: one EventSource per page, fed by the
// server's shared poller. Values are set with textContent; the charts
// fragment is HTML rendered and escaped by the server's html/template.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var state = document.getElementById("livestate");
  var src = new EventSource(live.getAttribute("data-src"));
  src.onopen = function () { state.textContent = "live"; };
  src.onerror = function () { state.textContent = "live refresh interrupted, retrying"; };
  src.onmessage = function (ev) {
    var m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    var set = function (name, value) {
      var els = document.querySelectorAll('[data-stat="' + name + '"]');
      for (var i = 0; i < els.length; i++) { els[i].textContent = value; }
    };
    set("pending", m.pending); set("dead", m.dead);
    set("oldestPending", m.oldestPending); set("deliveredLastMinute", m.deliveredLastMinute);
    set("at", m.at); set("error", m.error || "");
    if (m.charts) { document.getElementById("charts").innerHTML = m.charts; }
    state.textContent = "live";
    document.body.setAttribute("data-live-seq", m.seq);
  };
})();
