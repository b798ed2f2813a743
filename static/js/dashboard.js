// Live progress bars of the project dashboard: polls the jobs endpoint every two seconds and
// redraws the list. When a job that was running is gone, the page reloads so that the charts,
// counts and versions it changed are drawn anew, unless the settings form holds unsaved edits:
// then a notice with a "Refresh the page" button says the figures are out of date.
(function () {
  "use strict";
  var list = document.getElementById("jobs");
  if (!list) return;
  var url = list.getAttribute("data-jobs-url");
  var running = list.querySelectorAll("progress").length;
  var stale = document.getElementById("stale-note");
  var form = document.querySelector(".settings-form");

  function unsavedEdits() {
    if (!form) return false;
    if (form.dataset.unsaved === "true") return true; // refused values, shown again to be fixed
    return Array.prototype.some.call(form.elements, function (field) {
      if (field.type === "hidden" || field.type === "submit" || field.type === "button") return false;
      if (field.tagName === "SELECT") {
        return Array.prototype.some.call(field.options, function (option) {
          return option.selected !== option.defaultSelected;
        });
      }
      return field.value !== field.defaultValue;
    });
  }

  function outOfDate() {
    if (!unsavedEdits()) {
      window.location.reload();
      return;
    }
    stale.hidden = false;
  }

  if (stale) {
    stale.querySelector('[data-action="refresh"]').addEventListener("click", function () {
      window.location.reload();
    });
  }

  function render(jobs) {
    while (list.firstChild) list.removeChild(list.firstChild);
    if (!jobs.length) {
      var empty = document.createElement("li");
      empty.className = "muted";
      empty.textContent = "Nothing running.";
      list.appendChild(empty);
      return;
    }
    jobs.forEach(function (job) {
      var item = document.createElement("li");
      item.setAttribute("data-kind", job.kind);
      var label = document.createElement("span");
      label.className = "job-label";
      label.textContent = job.label + " ";
      var bar = document.createElement("progress");
      bar.max = 1;
      bar.value = job.progress;
      bar.setAttribute("aria-label", job.label);
      item.appendChild(label);
      item.appendChild(bar);
      list.appendChild(item);
    });
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body) return;
        render(body.jobs);
        if (running && body.jobs.length < running) outOfDate();
        running = body.jobs.length;
      })
      .catch(function () { /* offline for a moment: try again at the next tick */ })
      .finally(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 2000);
})();
