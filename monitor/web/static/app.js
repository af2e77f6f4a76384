// Shared by every page: relative times that keep counting.
(function () {
  "use strict";
  function ago(ms) {
    if (!ms) return "never";
    var s = Math.floor((Date.now() - ms) / 1000);
    if (s < 0) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 172800) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " days ago";
  }
  window.mbAgo = ago;
  setInterval(function () {
    document.querySelectorAll("[data-ts]").forEach(function (el) {
      el.textContent = ago(Number(el.getAttribute("data-ts")));
    });
  }, 1000);
})();
