// Print button of the ticket and receipt slips: works without an inline script.
(function () {
  "use strict";
  var b = document.getElementById("print");
  if (b) b.addEventListener("click", function () { window.print(); });
})();
