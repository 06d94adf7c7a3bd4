// The dashboard's data age, live: "updated 12 s ago" beside the time the figures were computed.
// A same-origin file (the CSP's script-src 'self' admits it), with no nonce on purpose: the page
// rendered for visitors without a session is reused byte for byte (and has a strong ETag), so it
// must carry nothing per request. The page reloads itself through <meta http-equiv="refresh">,
// which needs no script and keeps the scroll position; without this script the time stays shown.
(function () {
  "use strict";
  var stamp = document.querySelector("time.data-age");
  var words = document.getElementById("data-age-words");
  if (!stamp || !words) { return; }
  var at = Date.parse(stamp.getAttribute("datetime"));
  if (isNaN(at)) { return; }
  function tick() {
    var seconds = Math.max(0, Math.round((Date.now() - at) / 1000));
    words.textContent = ", updated " + (seconds < 60 ? seconds + " s ago" : Math.floor(seconds / 60) + " min ago");
  }
  tick();
  setInterval(tick, 1000);
}());
