// Waiting-room display: listens to the public SSE stream and shows each call on the
// board, with a chime made by WebAudio oscillators (no sound files, no speech service).
// All words come from the page (rendered from the string catalog); this file has none.
(function () {
  "use strict";
  var body = document.body;
  var arabicDigits = body.getAttribute("data-digits") === "arabic_indic";
  var url = body.getAttribute("data-events") || "/api/v1/display/events";
  var state = document.getElementById("live-state");
  var soundButton = document.getElementById("sound");
  var audio = null;

  function digits(s) {
    s = String(s);
    if (!arabicDigits) return s;
    return s.replace(/[0-9]/g, function (d) { return String.fromCharCode(0x0660 + Number(d)); });
  }

  function ensureAudio() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!audio) audio = new Ctx();
    if (audio.state === "suspended") audio.resume();
    return audio;
  }

  // Two soft bell tones (a falling major third), each a sine with a quick attack and a
  // long exponential decay, plus a quiet octave partial for brightness.
  function chime(recall) {
    var ctx = ensureAudio();
    if (!ctx || ctx.state !== "running") { if (soundButton) soundButton.hidden = false; return false; }
    var t0 = ctx.currentTime + 0.02;
    var notes = recall ? [659.25, 659.25] : [659.25, 523.25];
    notes.forEach(function (freq, i) {
      var start = t0 + i * 0.55;
      [[freq, 0.35], [freq * 2, 0.08]].forEach(function (partial) {
        var osc = ctx.createOscillator();
        var gain = ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = partial[0];
        gain.gain.setValueAtTime(0.0001, start);
        gain.gain.exponentialRampToValueAtTime(partial[1], start + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, start + 1.4);
        osc.connect(gain).connect(ctx.destination);
        osc.start(start);
        osc.stop(start + 1.5);
      });
    });
    body.setAttribute("data-chimes", String(Number(body.getAttribute("data-chimes") || "0") + 1));
    return true;
  }

  function cardFor(counter) {
    var card = document.getElementById("counter-" + counter);
    if (card) return card;
    var tpl = document.getElementById("call-template");
    var list = document.getElementById("calls");
    if (!tpl || !list) return null;
    card = tpl.content.firstElementChild.cloneNode(true);
    card.id = "counter-" + counter;
    card.setAttribute("data-counter", String(counter));
    card.querySelector(".counter-no").textContent = digits(counter);
    list.appendChild(card);
    return card;
  }

  function show(ev) {
    var card = cardFor(ev.counter);
    if (card) {
      card.querySelector(".ticket").textContent = digits(ev.ticket);
      card.classList.remove("fresh");
      void card.offsetWidth; // restart the highlight animation
      card.classList.add("fresh");
      // The newest call first.
      if (card.parentNode && card.parentNode.firstElementChild !== card) card.parentNode.insertBefore(card, card.parentNode.firstElementChild);
    }
    var nowTicket = document.getElementById("now-ticket");
    var nowCounter = document.getElementById("now-counter");
    if (nowTicket) nowTicket.textContent = digits(ev.ticket);
    if (nowCounter) nowCounter.textContent = digits(ev.counter);
    body.setAttribute("data-last-call", ev.ticket + "@" + ev.counter);
    chime(!!ev.recall);
  }

  // The clock shows the center's time, not the browser's: the server's time zone name
  // (and its current offset, should the browser not know the name) and the server's
  // clock (a display box without a clock battery may think it is 1970).
  var zone = body.getAttribute("data-tz") || "";
  var offsetMin = Number(body.getAttribute("data-utc-offset-min") || "0");
  var skewMs = Number(body.getAttribute("data-now-ms") || "0");
  skewMs = skewMs ? skewMs - Date.now() : 0;

  function pad(n) { return String(n).padStart(2, "0"); }

  function centerTime() {
    var now = new Date(Date.now() + skewMs);
    if (zone && window.Intl) {
      try {
        var hh = "", mm = "";
        new Intl.DateTimeFormat("en-GB", { timeZone: zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" })
          .formatToParts(now)
          .forEach(function (p) { if (p.type === "hour") hh = p.value; if (p.type === "minute") mm = p.value; });
        if (hh && mm) return pad(Number(hh) % 24) + ":" + mm;
      } catch (e) { /* an unknown zone name: use the offset */ }
    }
    var d = new Date(now.getTime() + offsetMin * 60000);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  }

  function clock() {
    var el = document.getElementById("clock");
    if (!el) return;
    el.textContent = digits(centerTime());
  }

  if (soundButton) {
    soundButton.addEventListener("click", function () {
      var ctx = ensureAudio();
      if (ctx) ctx.resume().then(function () { soundButton.hidden = true; chime(false); });
    });
  }
  // Kiosks started with --autoplay-policy=no-user-gesture-required need no click.
  var ctx = ensureAudio();
  if (ctx && ctx.state === "running" && soundButton) soundButton.hidden = true;

  clock();
  setInterval(clock, 10000);

  if (!window.EventSource) return;
  var es = new EventSource(url);
  es.addEventListener("open", function () { if (state) state.setAttribute("data-state", "live"); body.setAttribute("data-live", "1"); });
  es.addEventListener("error", function () { if (state) state.setAttribute("data-state", "lost"); body.setAttribute("data-live", "0"); });
  es.addEventListener("ticket_called", function (msg) {
    try { show(JSON.parse(msg.data)); } catch (e) { /* a malformed event is skipped */ }
  });
})();
