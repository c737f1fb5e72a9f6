// calltap console: the little the pages do in the browser. Everything works without it
// but the live page's updates and opening a SIP message from the ladder.
"use strict";

// The ladder's arrows link to #mN: open that message's text.
function openTarget() {
  var id = decodeURIComponent(location.hash.slice(1));
  var el = id && document.getElementById(id);
  if (el && el.tagName === "DETAILS") { el.open = true; }
}
window.addEventListener("hashchange", openTarget);
document.addEventListener("DOMContentLoaded", openTarget);

// Live: the table is replaced by each server-sent "calls" event, and durations tick
// every second between events (each cell holds the seconds elapsed when it was drawn:
// capture time, not this browser's clock).
document.addEventListener("DOMContentLoaded", function () {
  var table = document.getElementById("live-calls");
  if (!table || !window.EventSource) { return; }
  var state = document.getElementById("live-state");
  var drawn = Date.now();
  var source = new EventSource(table.getAttribute("data-events"));
  source.addEventListener("calls", function (e) {
    table.innerHTML = e.data;
    drawn = Date.now();
    if (state) { state.textContent = "updated " + new Date().toLocaleTimeString(); }
  });
  source.onerror = function () {
    if (state) { state.textContent = "disconnected; retrying"; }
  };
  setInterval(function () {
    var cells = table.querySelectorAll("[data-elapsed]");
    var since = (Date.now() - drawn) / 1000;
    for (var i = 0; i < cells.length; i++) {
      var s = Math.max(0, Math.floor(Number(cells[i].getAttribute("data-elapsed")) + since));
      var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
      cells[i].textContent = (h ? h + ":" + (m < 10 ? "0" : "") : "") + m + ":" + (sec < 10 ? "0" : "") + sec;
    }
  }, 1000);
});
