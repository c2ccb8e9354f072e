// trailhouse web UI: small enhancements only; every page works without script (real links, forms, buttons).
(function () {
  "use strict";

  // A click anywhere on a result row opens its event (keyboard users use the link in the row).
  document.addEventListener("click", function (ev) {
    var row = ev.target.closest && ev.target.closest("tr[data-href]");
    if (!row || ev.target.closest("a, button, input, select, label, form")) return;
    if (window.getSelection && String(window.getSelection())) return; // selecting text, not navigating
    window.location.href = row.getAttribute("data-href");
  });

  // "Copy JSON" on the event page.
  document.addEventListener("click", function (ev) {
    var button = ev.target.closest && ev.target.closest("button[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    var status = document.getElementById(button.getAttribute("data-status"));
    if (!source || !navigator.clipboard) {
      if (status) status.textContent = "Copying is not available here: select the text instead.";
      return;
    }
    navigator.clipboard.writeText(source.textContent).then(function () {
      if (status) status.textContent = "Copied.";
    }, function () {
      if (status) status.textContent = "Could not copy: select the text instead.";
    });
  });

  // Show the buttons that need script (hidden for no-script users, who select text instead).
  document.querySelectorAll("[data-needs-script]").forEach(function (el) { el.hidden = false; });
})();
