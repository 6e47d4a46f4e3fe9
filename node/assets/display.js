// Waiting-room display: listens to the public SSE stream and shows each call on the
// board. With sound on (`/display?sound=1`) each call plays a chime made by WebAudio
// oscillators, then the call in spoken Arabic: the clips the node names for it
// (`/display/speech?ticket=&counter=`), built into the node, played one after the other.
// A wall screen has no mouse, so nothing waits for a click: the browser is started with
// --autoplay-policy=no-user-gesture-required, and a notice says so when it was not.
// All words come from the page (rendered from the string catalog); this file has none.
(function () {
  "use strict";
  var body = document.body;
  var arabicDigits = body.getAttribute("data-digits") === "arabic_indic";
  var url = body.getAttribute("data-events") || "/api/v1/display/events";
  var speechUrl = body.getAttribute("data-speech") || "/display/speech";
  var soundOn = body.getAttribute("data-sound") === "1";
  var state = document.getElementById("live-state");
  var blocked = document.getElementById("sound-blocked");
  var audio = null;
  var groupNames = {};
  document.querySelectorAll("#group-names [data-group]").forEach(function (li) {
    groupNames[li.getAttribute("data-group")] = li.textContent;
  });

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
    if (!ctx || ctx.state !== "running") { soundBlocked(); return 0; }
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
    return t0 + notes.length * 0.55 + 0.3;
  }

  function soundBlocked() {
    if (blocked) blocked.hidden = false;
    body.setAttribute("data-sound-state", "blocked");
  }

  // Decoded clips by URL: each is fetched once (and the node lets the browser cache it).
  var clips = {};
  function clip(u) {
    if (!clips[u]) {
      clips[u] = fetch(u)
        .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.arrayBuffer(); })
        .then(function (buf) { return ensureAudio().decodeAudioData(buf); });
      clips[u].catch(function () { delete clips[u]; });
    }
    return clips[u];
  }

  // Calls are spoken one at a time, in order: a second call waits for the first.
  var speaking = Promise.resolve();
  function speak(ticket, counter, after) {
    var q = "?ticket=" + encodeURIComponent(ticket) + "&counter=" + encodeURIComponent(counter);
    speaking = speaking.then(function () {
      return fetch(speechUrl + q)
        .then(function (r) { return r.ok ? r.json() : { clips: [] }; })
        .then(function (answer) {
          var urls = answer.clips || [];
          body.setAttribute("data-spoken", JSON.stringify(urls));
          (window.markazSpoken = window.markazSpoken || []).push(urls);
          return Promise.all(urls.map(clip)).then(function (buffers) {
            var ctx = ensureAudio();
            if (!ctx || ctx.state !== "running") { soundBlocked(); return; }
            var t = Math.max(ctx.currentTime + 0.05, after || 0);
            buffers.forEach(function (b, i) {
              var src = ctx.createBufferSource();
              src.buffer = b;
              src.connect(ctx.destination);
              src.start(t);
              // A short breath between words; a longer one before "to counter".
              t += b.duration + (urls[i + 1] && urls[i + 1].indexOf("/to_counter.") >= 0 ? 0.25 : 0.06);
            });
            body.setAttribute("data-speech-played", String(Number(body.getAttribute("data-speech-played") || "0") + 1));
            // The next call starts when this one has been heard.
            return new Promise(function (done) { setTimeout(done, Math.max(0, (t - ctx.currentTime) * 1000)); });
          });
        })
        .catch(function () { body.setAttribute("data-speech-error", "1"); });
    });
  }

  // Drops the cards of the oldest calls that no longer fit the board (never clipped).
  function fit() {
    var list = document.getElementById("calls");
    if (!list) return;
    while (list.children.length > 1 && list.scrollHeight > list.clientHeight + 1) {
      list.removeChild(list.lastElementChild);
    }
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
    list.insertBefore(card, list.firstElementChild);
    return card;
  }

  function show(ev) {
    var card = cardFor(ev.counter);
    if (card) {
      card.querySelector(".ticket").textContent = digits(ev.ticket);
      var g = card.querySelector(".group-name");
      if (g) g.textContent = groupNames[ev.group] || "";
      card.classList.remove("fresh");
      void card.offsetWidth; // restart the highlight animation
      card.classList.add("fresh");
      // The newest call first.
      if (card.parentNode && card.parentNode.firstElementChild !== card) card.parentNode.insertBefore(card, card.parentNode.firstElementChild);
    }
    var nowTicket = document.getElementById("now-ticket");
    var nowCounter = document.getElementById("now-counter");
    var nowGroup = document.getElementById("now-group");
    if (nowTicket) nowTicket.textContent = digits(ev.ticket);
    if (nowCounter) nowCounter.textContent = digits(ev.counter);
    if (nowGroup) nowGroup.textContent = groupNames[ev.group] || "";
    fit();
    body.setAttribute("data-last-call", ev.ticket + "@" + ev.counter);
    if (soundOn) speak(ev.ticket, ev.counter, chime(!!ev.recall));
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

  if (soundOn) {
    // Kiosks started with --autoplay-policy=no-user-gesture-required run audio at once.
    var ctx = ensureAudio();
    if (!ctx || ctx.state !== "running") setTimeout(function () {
      if (!audio || audio.state !== "running") soundBlocked();
    }, 1500);
    else body.setAttribute("data-sound-state", "on");
  }
  fit();
  window.addEventListener("resize", fit);

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
