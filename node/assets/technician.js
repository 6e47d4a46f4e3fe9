// The technician's panels refresh themselves: every few seconds the page fetches the
// panels (rendered by the server, in the page's language) and swaps them in. A failed
// fetch keeps the last panels and marks them as old; the next success clears the mark.
(function () {
  var box = document.getElementById("panels");
  if (!box || !window.fetch) { return; }
  var url = box.getAttribute("data-refresh");
  var every = 5000;
  function refresh() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        // A redirect means the session ended (the login page): keep the old panels.
        if (!r.ok || r.redirected) { throw new Error(String(r.status)); }
        return r.text();
      })
      .then(function (html) {
        box.innerHTML = html;
        box.removeAttribute("data-offline");
        box.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { box.setAttribute("data-offline", "1"); })
      .then(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();
