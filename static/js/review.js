/* Quorum review page: claims one open review task at a time, shows the text with what every
 * annotator chose (and how reliable each one is), the consensus estimate and the model's
 * prediction, and records the reviewer's decision through the REST API without page reloads.
 *
 * Deciding takes two steps so that no stray key press settles an item: a label shortcut (or a
 * click) picks a label, Enter (Ctrl+Enter from the note) confirms it.
 *
 * API used (all JSON, session cookie + CSRF header):
 *   POST {api}projects/{id}/reviews/next     -> {review: R | null, open}
 *   POST {api}reviews/{id}/resolve           {label, note} -> {review: R}
 *   GET  {api}projects/{id}/agreement        -> {project_kappa, policy, ...}
 */
(function () {
  "use strict";

  var root = document.getElementById("reviewer");
  var configNode = document.getElementById("reviewer-config");
  if (!root || !configNode) return;
  var config = JSON.parse(configNode.textContent);

  var SETTLE_MS = 200; // key presses right after a new task appears are ignored (double presses)
  var POLL_MS = 20000; // no open task: look again this often while the page is visible
  var TOP_POSTERIOR = 4; // labels shown in the consensus estimate

  function $(selector) {
    return root.querySelector(selector);
  }

  var el = {
    workspace: $("#workspace"),
    panel: $("#item-panel"),
    text: $("#item-text"),
    externalId: $('[data-item="external_id"]'),
    metadata: $('[data-item="metadata"]'),
    reason: $('[data-review="reason"]'),
    votes: $("#vote-list"),
    posterior: $("#posterior"),
    posteriorNone: $("#posterior-none"),
    model: $("#model-prediction"),
    modelLabel: $('[data-model="label"]'),
    modelConfidence: $('[data-model="confidence"]'),
    note: $("#review-note"),
    confirm: $("#confirm"),
    confirmText: $('[data-confirm="text"]'),
    pickHint: $("#pick-hint"),
    status: $("#status"),
    statusText: $('[data-status="text"]'),
    retry: $('[data-action="retry"]'),
    login: $('[data-status="login"]'),
    dismiss: $('[data-action="dismiss"]'),
    empty: $("#empty-state"),
    check: $('[data-action="check"]'),
    filter: $("#label-filter"),
    noMatch: $("#no-match"),
    announcer: $("#announcer"),
    open: $('[data-progress="open"]'),
    resolved: $('[data-progress="resolved"]'),
    agreement: $("#agreement"),
    kappa: $('[data-agreement="kappa"]'),
    policy: $('[data-agreement="policy"]'),
    agreementMore: $('[data-agreement="more"]'),
  };
  var buttons = Array.prototype.slice.call(root.querySelectorAll(".label-btn"));
  var byKey = {};
  var byLabel = {};
  buttons.forEach(function (button) {
    if (button.dataset.key) byKey[button.dataset.key.toLowerCase()] = button;
    byLabel[button.dataset.label] = button;
  });
  var noteKey = config.noteKey || "n";

  var state = {
    current: null, // the review task on screen (R)
    picked: null, // the label picked for it, not yet confirmed
    busy: false, // a resolve is in flight
    loading: false, // a request for the next task is in flight
    acceptAfter: 0,
    resolved: 0,
    pollTimer: null,
    pollWhenVisible: false,
  };

  // --- HTTP ---------------------------------------------------------------------------------

  function ApiError(status, body, network) {
    this.status = status;
    this.body = body || {};
    this.network = Boolean(network);
    this.code = (body && body.code) || null;
    this.detail = (body && typeof body.detail === "string" && body.detail) || "";
  }

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : config.csrfToken;
  }

  function call(method, path, body) {
    var options = {
      method: method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(config.apiRoot + path, options).then(
      function (response) {
        return response.text().then(
          function (text) {
            var data = null;
            if (text) {
              try {
                data = JSON.parse(text);
              } catch (error) {
                data = null;
              }
            }
            if (!response.ok) throw new ApiError(response.status, data, false);
            return data || {};
          },
          function () {
            throw new ApiError(0, null, true);
          }
        );
      },
      function () {
        throw new ApiError(0, null, true);
      }
    );
  }

  function isAuthError(error) {
    if (error.status === 401) return true;
    return error.status === 403 && /credentials|csrf|authenticat|log ?in/i.test(error.detail);
  }

  // --- words --------------------------------------------------------------------------------

  function percent(value) {
    return Math.round(value * 100) + "%";
  }

  function fixed(value) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(2) : null;
  }

  function excerpt(text, length) {
    var flat = String(text).replace(/\s+/g, " ").trim();
    return flat.length > length ? flat.slice(0, length - 1) + "…" : flat;
  }

  function reasonWords(reason) {
    switch (reason) {
      case "disagreement":
        return "Annotators disagree";
      case "low_confidence":
        return "Consensus under " + percent(config.thresholds.minConsensusConfidence) + " confidence";
      case "policy_all":
        return "Low project agreement: all multi-labelled items are reviewed";
      case "max_labels":
        return "No majority after " + config.maxLabels + " labels";
      default:
        return reason ? String(reason).replace(/_/g, " ") : "";
    }
  }

  function policyWords(policy, kappa) {
    // policy: the review policy in force ("all" | "disagreements" | "confidence"), null before the
    // first aggregation.
    var t = config.thresholds;
    var measured = typeof kappa === "number" && isFinite(kappa);
    if (policy === "all") {
      return "Agreement is low (under " + fixed(t.reviewAllBelowKappa) + "): every item with two or more labels is reviewed.";
    }
    if (policy === "confidence") {
      return (
        "Agreement is good (" +
        fixed(t.reviewDisagreementsBelowKappa) +
        " or more): only items whose consensus is under " +
        percent(t.minConsensusConfidence) +
        " confidence are reviewed."
      );
    }
    if (policy === "disagreements" && measured) {
      return (
        "Agreement is moderate (" +
        fixed(t.reviewAllBelowKappa) +
        " to " +
        fixed(t.reviewDisagreementsBelowKappa) +
        "): items whose annotators disagree are reviewed."
      );
    }
    if (policy === "disagreements" || policy === null || policy === undefined) {
      return "Too few items share annotators to measure agreement yet; items whose annotators disagree are reviewed.";
    }
    return "Review policy: " + String(policy).replace(/_/g, " ") + ".";
  }

  // --- rendering --------------------------------------------------------------------------

  function announce(message) {
    el.announcer.textContent = "";
    window.setTimeout(function () {
      el.announcer.textContent = message;
    }, 50);
  }

  function node(tag, className, text) {
    var element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined && text !== null) element.textContent = text;
    return element;
  }

  function setOpen(open) {
    el.open.textContent = typeof open === "number" ? open.toLocaleString() : "–";
    root.dataset.open = typeof open === "number" ? String(open) : "";
  }

  function renderMetadata(metadata) {
    var dl = el.metadata;
    dl.textContent = "";
    var keys = metadata && typeof metadata === "object" ? Object.keys(metadata).slice(0, 6) : [];
    keys.forEach(function (key) {
      var value = metadata[key];
      var wrap = node("div");
      wrap.appendChild(node("dt", null, key));
      wrap.appendChild(node("dd", null, excerpt(typeof value === "string" ? value : JSON.stringify(value), 60)));
      dl.appendChild(wrap);
    });
    dl.hidden = keys.length === 0;
  }

  function qualityWords(quality) {
    return typeof quality === "number" && isFinite(quality) ? percent(quality) + " DS accuracy" : "accuracy not known";
  }

  function renderVotes(annotations) {
    el.votes.textContent = "";
    var counts = {};
    var voters = {};
    (annotations || []).forEach(function (annotation) {
      counts[annotation.label] = (counts[annotation.label] || 0) + 1;
      (voters[annotation.label] = voters[annotation.label] || []).push(annotation.username);
      var li = node("li", "vote");
      li.appendChild(node("span", "voter", annotation.username));
      li.appendChild(document.createTextNode(" — "));
      li.appendChild(node("strong", "vote-label", annotation.label));
      li.appendChild(document.createTextNode(" · "));
      var quality = node("span", "vote-quality", qualityWords(annotation.annotator_quality));
      if (typeof annotation.annotator_quality !== "number") quality.classList.add("is-unknown");
      li.appendChild(quality);
      el.votes.appendChild(li);
    });
    if (!el.votes.children.length) el.votes.appendChild(node("li", "muted small", "No annotations."));
    buttons.forEach(function (button) {
      var name = button.dataset.label;
      var n = counts[name] || 0;
      var badge = button.querySelector("[data-votes]");
      button.classList.toggle("is-voted", n > 0);
      badge.hidden = n === 0;
      badge.textContent = n === 1 ? "1 vote" : n ? n + " votes" : "";
      button.title = n ? "Chosen by " + voters[name].join(", ") : button.dataset.description || "";
      button.setAttribute("aria-label", n ? name + ", chosen by " + voters[name].join(", ") : name);
    });
  }

  function renderPosterior(posterior) {
    el.posterior.textContent = "";
    var rows = (posterior || []).slice().sort(function (a, b) {
      return b.p - a.p;
    });
    rows.slice(0, TOP_POSTERIOR).forEach(function (row, index) {
      var li = node("li", "posterior-row" + (index === 0 ? " is-top" : ""));
      li.appendChild(node("span", "posterior-label", row.label));
      var track = node("span", "posterior-track");
      track.setAttribute("aria-hidden", "true");
      var bar = node("span", "posterior-bar");
      bar.style.width = Math.max(0, Math.min(100, row.p * 100)).toFixed(1) + "%";
      track.appendChild(bar);
      li.appendChild(track);
      li.appendChild(node("span", "posterior-p", percent(row.p)));
      el.posterior.appendChild(li);
    });
    el.posterior.hidden = rows.length === 0;
    el.posteriorNone.hidden = rows.length !== 0;
  }

  function renderModel(prediction) {
    if (!prediction || !prediction.label) {
      el.model.hidden = true;
      return;
    }
    el.modelLabel.textContent = prediction.label;
    el.modelConfidence.textContent =
      typeof prediction.confidence === "number" ? "(" + percent(prediction.confidence) + " sure)" : "";
    el.model.hidden = false;
  }

  function canAct() {
    return Boolean(state.current) && !state.busy && performance.now() >= state.acceptAfter;
  }

  function updateControls() {
    var off = !state.current || state.busy;
    buttons.forEach(function (button) {
      button.setAttribute("aria-disabled", off ? "true" : "false");
      var picked = state.picked !== null && button.dataset.label === state.picked;
      button.classList.toggle("is-chosen", picked);
      button.setAttribute("aria-pressed", picked ? "true" : "false");
    });
    var ready = !off && state.picked !== null;
    el.confirm.setAttribute("aria-disabled", ready ? "false" : "true");
    el.confirmText.textContent = state.picked !== null ? "Resolve as " + state.picked : "Resolve";
    if (state.picked !== null) el.pickHint.classList.remove("is-nudged");
    el.pickHint.textContent = state.busy
      ? "Saving…"
      : state.picked !== null
        ? document.activeElement === el.note
          ? "Ctrl+Enter confirms"
          : "Enter confirms · Esc clears"
        : "Pick a label, then confirm.";
    root.dataset.accepting = canAct() ? "true" : "false";
    root.dataset.review = state.current ? String(state.current.id) : "";
    root.dataset.externalId = state.current ? String(state.current.item.external_id) : "";
    root.dataset.picked = state.picked || "";
  }

  function setView(view) {
    // view: "loading" | "ready" | "saving" | "empty"
    root.dataset.state = view;
    var empty = view === "empty";
    el.empty.hidden = !empty;
    el.workspace.hidden = empty;
    el.panel.setAttribute("aria-busy", view === "loading" ? "true" : "false");
    if (view === "loading") {
      el.text.textContent = "Loading the next task…";
      el.text.classList.add("is-placeholder");
      el.externalId.textContent = "";
      el.metadata.hidden = true;
      el.reason.hidden = true;
    }
  }

  function setStatus(message, options) {
    options = options || {};
    if (!message) {
      el.status.hidden = true;
      el.statusText.textContent = "";
      return;
    }
    el.status.hidden = false;
    el.status.className = "status " + (options.kind === "notice" ? "is-notice" : "is-error");
    el.statusText.textContent = message;
    el.retry.hidden = !options.retry;
    el.retry.onclick = options.retry
      ? function () {
          setStatus(null);
          if (!el.workspace.hidden) el.text.focus({ preventScroll: true });
          options.retry();
        }
      : null;
    el.login.hidden = !options.login;
    el.dismiss.hidden = !options.dismissible;
    if (options.retry && options.focusRetry) el.retry.focus();
  }

  function show(review, message) {
    state.current = review;
    state.picked = null;
    var item = review.item || {};
    setView("ready");
    el.text.classList.remove("is-placeholder");
    el.text.textContent = item.text;
    el.text.scrollTop = 0;
    el.externalId.textContent = item.external_id;
    renderMetadata(item.metadata);
    el.reason.textContent = reasonWords(review.reason);
    el.reason.hidden = !review.reason;
    root.dataset.reason = review.reason || "";
    renderVotes(review.annotations);
    renderPosterior(review.posterior);
    renderModel(review.model_prediction);
    el.note.value = review.note || "";
    if (el.filter) clearFilter();
    state.acceptAfter = performance.now() + SETTLE_MS;
    window.setTimeout(updateControls, SETTLE_MS + 5);
    updateControls();
    if (el.panel.getBoundingClientRect().top < 0) el.panel.scrollIntoView({ block: "start" });
    var said = (review.annotations || []).map(function (annotation) {
      return annotation.username + " chose " + annotation.label;
    });
    announce(
      (message ? message + " " : "") +
        "Review task. " +
        reasonWords(review.reason) +
        ". " +
        (said.length ? said.join(", ") + ". " : "") +
        "Text: " +
        excerpt(item.text, 200)
    );
  }

  // --- agreement ------------------------------------------------------------------------------

  function loadAgreement() {
    call("GET", "projects/" + config.projectId + "/agreement")
      .then(function (data) {
        var kappa = data.project_kappa;
        el.kappa.textContent = fixed(kappa) || "n/a";
        el.policy.textContent = policyWords(data.policy, kappa);
        var more = [];
        if (fixed(data.fleiss_kappa)) more.push("Fleiss' kappa " + fixed(data.fleiss_kappa));
        if (fixed(data.krippendorff_alpha)) more.push("Krippendorff's alpha " + fixed(data.krippendorff_alpha));
        if (data.annotators && data.annotators.length) {
          more.push(data.annotators.length + " annotator" + (data.annotators.length === 1 ? "" : "s"));
        }
        el.agreementMore.textContent = more.join(" · ");
        el.agreementMore.hidden = more.length === 0;
        el.agreement.setAttribute("aria-busy", "false");
      })
      .catch(function (error) {
        el.kappa.textContent = "n/a";
        el.policy.textContent =
          error.status === 404 ? "Agreement has not been computed yet." : "Agreement could not be loaded.";
        el.agreementMore.hidden = true;
        el.agreement.setAttribute("aria-busy", "false");
      });
  }

  // --- loading tasks ----------------------------------------------------------------------

  function stopPolling() {
    if (state.pollTimer !== null) window.clearTimeout(state.pollTimer);
    state.pollTimer = null;
    state.pollWhenVisible = false;
  }

  function schedulePoll() {
    stopPolling();
    state.pollTimer = window.setTimeout(function () {
      state.pollTimer = null;
      if (document.visibilityState !== "visible") {
        state.pollWhenVisible = true;
        return;
      }
      loadNext({ quiet: true, message: "A new task is ready." });
    }, POLL_MS);
  }

  function showEmpty() {
    var wasEmpty = root.dataset.state === "empty";
    state.current = null;
    state.picked = null;
    setView("empty");
    updateControls();
    if (!wasEmpty) announce("No disagreements waiting.");
    schedulePoll();
  }

  function loadNext(options) {
    options = options || {};
    if (state.loading || state.current) return Promise.resolve();
    stopPolling();
    state.loading = true;
    if (!options.quiet) setView("loading");
    updateControls();
    return call("POST", "projects/" + config.projectId + "/reviews/next", {})
      .then(function (data) {
        state.loading = false;
        setOpen(data.open);
        if (data.review) {
          if (root.dataset.state === "empty") setStatus(null);
          show(data.review, options.message);
        } else {
          showEmpty();
          if (options.message && !options.quiet) announce(options.message + " No disagreements waiting.");
        }
      })
      .catch(function (error) {
        state.loading = false;
        if (options.quiet && error.network) {
          schedulePoll();
          return;
        }
        reportError(error, "load the next review task", function () {
          loadNext(options);
        });
      });
  }

  // --- actions ----------------------------------------------------------------------------

  function reportError(error, what, retry, extra) {
    extra = extra || {};
    if (error.network) {
      setStatus("Could not " + what + ": no answer from the server. " + (extra.kept || "") + "Check your connection and retry.", {
        retry: retry,
        focusRetry: extra.focusRetry,
      });
    } else if (isAuthError(error)) {
      setStatus("You are logged out, so Quorum could not " + what + ". " + (extra.kept || "") + "Log in again to go on.", {
        login: true,
      });
    } else if (error.status >= 500 || error.status === 429) {
      setStatus("Could not " + what + ": the server had a problem (" + error.status + "). " + (extra.kept || ""), {
        retry: retry,
        focusRetry: extra.focusRetry,
      });
    } else {
      setStatus("Could not " + what + ": " + (error.detail || "the server refused it (" + error.status + ")") + ".", {
        dismissible: true,
      });
    }
  }

  function pick(labelName) {
    if (!canAct()) return;
    state.picked = labelName;
    updateControls();
    announce("Picked " + labelName + ". Press Enter to resolve, Escape to clear.");
  }

  function clearPick() {
    if (state.picked === null || state.busy) return;
    state.picked = null;
    updateControls();
    announce("Pick cleared.");
  }

  function confirm() {
    if (!canAct()) return;
    if (state.picked === null) {
      announce("Pick a label first.");
      el.pickHint.classList.add("is-nudged");
      window.setTimeout(function () {
        el.pickHint.classList.remove("is-nudged");
      }, 600);
      return;
    }
    var review = state.current;
    var labelName = state.picked;
    var note = el.note.value.trim();
    var fromNote = document.activeElement === el.note;
    state.busy = true;
    setStatus(null);
    root.dataset.state = "saving";
    updateControls();
    call("POST", "reviews/" + review.id + "/resolve", { label: labelName, note: note })
      .then(function () {
        state.busy = false;
        state.resolved += 1;
        el.resolved.textContent = state.resolved.toLocaleString();
        state.current = null;
        state.picked = null;
        el.note.value = "";
        if (fromNote) el.text.focus({ preventScroll: true });
        loadAgreement();
        return loadNext({ message: "Resolved as " + labelName + "." });
      })
      .catch(function (error) {
        state.busy = false;
        if (state.current !== review) return;
        root.dataset.state = "ready";
        updateControls();
        if (error.status === 409 || error.status === 404) {
          // Someone else settled it (or it went away): nothing to retry, go on with the next one.
          var why = error.detail || "another reviewer resolved it";
          state.current = null;
          state.picked = null;
          el.note.value = "";
          return loadNext({ message: "Not saved." }).then(function () {
            setStatus("Your decision for #" + review.item.external_id + " was not saved: " + why + ".", {
              kind: "notice",
              dismissible: true,
            });
          });
        }
        reportError(error, "resolve as “" + labelName + "”", confirm, {
          kept: "Your pick and note are kept. ",
          focusRetry: true,
        });
      });
  }

  // --- label filter -----------------------------------------------------------------------

  function normalise(text) {
    return String(text).toLowerCase().replace(/[_\-\s]+/g, " ").trim();
  }

  function visibleButtons() {
    return buttons.filter(function (button) {
      return !button.hidden;
    });
  }

  function applyFilter() {
    var query = normalise(el.filter.value);
    var count = 0;
    buttons.forEach(function (button) {
      var match = !query || normalise(button.dataset.label).indexOf(query) !== -1;
      button.hidden = !match;
      if (match) count += 1;
    });
    el.noMatch.hidden = count !== 0;
  }

  function clearFilter() {
    if (!el.filter) return;
    el.filter.value = "";
    applyFilter();
  }

  if (el.filter) {
    el.filter.addEventListener("input", applyFilter);
    el.filter.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        var first = visibleButtons()[0];
        if (first && canAct()) {
          pick(first.dataset.label);
          clearFilter();
          el.text.focus({ preventScroll: true });
        }
      } else if (event.key === "Escape") {
        event.preventDefault();
        clearFilter();
        el.text.focus({ preventScroll: true });
      } else if (event.key === "ArrowDown") {
        var target = visibleButtons()[0];
        if (target) {
          event.preventDefault();
          target.focus();
        }
      }
    });
  }

  // --- events -----------------------------------------------------------------------------

  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      pick(button.dataset.label);
    });
  });
  el.confirm.addEventListener("click", confirm);
  el.note.addEventListener("focus", updateControls);
  el.note.addEventListener("blur", updateControls);
  el.check.addEventListener("click", function () {
    loadNext({ quiet: true, message: "A new task is ready." });
  });
  el.dismiss.addEventListener("click", function () {
    setStatus(null);
    if (!el.workspace.hidden) el.text.focus({ preventScroll: true });
  });

  function isTyping(target) {
    if (!target || !target.matches) return false;
    return target.matches(
      'input:not([type="checkbox"]):not([type="radio"]):not([type="button"]):not([type="submit"]), textarea, select, [contenteditable=""], [contenteditable="true"]'
    );
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey) return;
    var target = event.target;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      if (!state.current) return;
      event.preventDefault();
      if (!event.repeat) confirm();
      return;
    }
    if (event.ctrlKey || event.metaKey) return;
    if (isTyping(target)) {
      if (target === el.note && event.key === "Escape") {
        event.preventDefault();
        el.text.focus({ preventScroll: true }); // the note stays as typed
      }
      return;
    }
    if (event.key === "Enter") {
      if (target && target.classList && target.classList.contains("label-btn")) {
        // Enter on a label button picks it; on the picked one, it confirms.
        event.preventDefault();
        if (event.repeat) return;
        if (state.picked === target.dataset.label) confirm();
        else pick(target.dataset.label);
        return;
      }
      if (target && target.closest && target.closest("button, a, summary")) return; // their own action
      if (!state.current) return;
      event.preventDefault();
      if (!event.repeat) confirm();
      return;
    }
    if (event.key === "Escape") {
      if (state.picked !== null) {
        event.preventDefault();
        clearPick();
      }
      return;
    }
    if (event.key === "/" && el.filter) {
      event.preventDefault();
      el.filter.focus();
      el.filter.select();
      return;
    }
    if (event.key.length !== 1) return;
    if (event.key === noteKey || event.key === "N") {
      if (el.workspace.hidden) return;
      event.preventDefault();
      el.note.focus();
      return;
    }
    var button = byKey[event.key.toLowerCase()];
    if (!button) return;
    event.preventDefault();
    if (event.repeat) return;
    pick(button.dataset.label);
  });

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && state.pollWhenVisible) {
      state.pollWhenVisible = false;
      loadNext({ quiet: true, message: "A new task is ready." });
    }
  });

  window.addEventListener("beforeunload", function (event) {
    if (state.busy || (state.current && el.note.value.trim())) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  updateControls();
  loadAgreement();
  loadNext();
})();
