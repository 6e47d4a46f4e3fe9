// The ticket and receipt slips: a page as long as the slip, the print button, and the
// kiosk's slip that prints itself and goes back to the start. No inline script (CSP).
(function () {
  "use strict";
  var paper = document.querySelector(".paper");
  var ruleIndex = -1;

  // Chromium refuses `size: 80mm auto`: set the page to the height of the slip (mm at
  // 96 px to the inch), through the CSS object model (inline styles are not allowed).
  function fitPage() {
    if (!paper) return;
    var sheet = null;
    for (var i = 0; i < document.styleSheets.length; i++) {
      var s = document.styleSheets[i];
      if (s.href && s.href.indexOf("/assets/markaz.css") !== -1) sheet = s;
    }
    if (!sheet) return;
    var mm = Math.ceil(paper.getBoundingClientRect().height * 25.4 / 96) + 1;
    if (ruleIndex >= 0) sheet.deleteRule(ruleIndex);
    ruleIndex = sheet.insertRule("@page{size:80mm " + mm + "mm;margin:0}", sheet.cssRules.length);
    document.body.setAttribute("data-page-mm", String(mm));
  }

  function printNow() {
    fitPage();
    window.print();
  }

  window.addEventListener("beforeprint", fitPage);
  var b = document.getElementById("print");
  if (b) b.addEventListener("click", printNow);

  var body = document.body;
  if (body.getAttribute("data-auto-print") === "1") {
    var back = body.getAttribute("data-return") || "/";
    var secs = Number(body.getAttribute("data-return-secs") || "10");
    window.addEventListener("load", function () {
      // Started with --kiosk-printing, Chromium prints at once, with no dialog.
      printNow();
      try {
        var n = Number(sessionStorage.getItem("markazPrinted") || "0") + 1;
        sessionStorage.setItem("markazPrinted", String(n));
      } catch (e) { /* storage off: nothing to count */ }
      body.setAttribute("data-printed", "1");
      setTimeout(function () { location.replace(back); }, secs * 1000);
    });
  } else {
    window.addEventListener("load", fitPage);
  }
})();
