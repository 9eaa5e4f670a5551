// Forms that ask before they submit (<form data-confirm="question">), e.g. revoking a
// station (templates/stations.html). A file, not an onsubmit attribute: the
// Content-Security-Policy runs no inline script, so an attribute would never ask.
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.getAttribute("data-confirm"))) e.preventDefault();
    });
  });
})();
