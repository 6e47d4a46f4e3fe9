// Live parts of the desk and reception pages: when a ticket is issued, called, moved or
// served later, the page is fetched again from its `data-live-src` and each element
// marked `data-live` is replaced by its fresh copy (same id). Forms being typed in are
// never touched. The staff event stream carries the news; a slow poll covers a stream
// that a proxy buffers or that dropped. This file carries no words.
(function () {
  "use strict";
  var root = document.querySelector("[data-live-src]");
  if (!root) return;
  var src = root.getAttribute("data-live-src");
  var busy = false;
  var again = false;

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(src, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var fresh = el.id && doc.getElementById(el.id);
          if (fresh) el.replaceWith(document.importNode(fresh, true));
        });
        document.body.setAttribute("data-live-refreshed", String(Date.now()));
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  if (window.EventSource) {
    var events = new EventSource("/api/v1/events");
    ["ticket_issued", "ticket_called", "queue_changed", "lagged"].forEach(function (name) {
      events.addEventListener(name, refresh);
    });
    // After a reconnect, catch up on what happened meanwhile.
    events.addEventListener("open", refresh);
    document.body.setAttribute("data-live-mode", "sse");
  }
  setInterval(refresh, 20000);
})();
