/* Quorum review page: claims one open review task at a time, shows the text with what every
 * annotator chose (and how reliable each one is), the consensus estimate and the model's
 * prediction, and records the reviewer's decision through the REST API without page reloads.
 *
 * Deciding takes two steps so that no stray key press settles an item: a label shortcut (or a
 * click) picks a label, Enter (Ctrl+Enter from the note) confirms it.
 *
 * Multi-label projects (config.taskType "multi_label"): the decision is a tag set. Each annotator's
 * tag set, every tag's posterior P(tag applies) and the disputed tags are shown; label shortcuts
 * (or clicks) turn tags on and off, config.noneKey turns "none of these" on (where
 * config.allowEmptyTags), Enter confirms the tags turned on.
 *
 * API used (all JSON, session cookie + CSRF header):
 *   POST {api}projects/{id}/reviews/next     -> {review: R | null, open}
 *   POST {api}reviews/{id}/resolve           {label, note} (multi-label: {labels, note}) -> {review: R}
 *   GET  {api}projects/{id}/agreement        -> {project_kappa, policy, ...}
 */
(function () {
  "use strict";

  var root = document.getElementById("reviewer");
  var configNode = document.getElementById("reviewer-config");
  if (!root || !configNode) return;
  var config = JSON.parse(configNode.textContent);
  var Q = window.Quorum;

  var SETTLE_MS = 200; // key presses right after a new task appears are ignored (double presses)
  var POLL_MS = 20000; // no open task: look again this often while the page is visible
  var TOP_POSTERIOR = 4; // labels shown in the consensus estimate
  var MULTI = config.taskType === "multi_label"; // tag sets: keys toggle, Enter confirms the set
  var ALLOW_EMPTY = MULTI && config.allowEmptyTags === true;
  var NONE_KEY = config.noneKey || ""; // "": no key (the button only)
  var TOP_TAGS = 12; // tags shown in the tag estimate (the disputed ones always)

  function $(selector) {
    return root.querySelector(selector);
  }

  var el = Q.elements(root, {
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
    open: $('[data-progress="open"]'),
    resolved: $('[data-progress="resolved"]'),
    agreement: $("#agreement"),
    kappa: $('[data-agreement="kappa"]'),
    policy: $('[data-agreement="policy"]'),
    agreementMore: $('[data-agreement="more"]'),
    disputed: $("#disputed"),
    disputedNames: $('[data-disputed="names"]'),
    none: $('[data-action="none"]'),
  });
  var labelButtons = Q.labelButtons(root);
  var buttons = labelButtons.buttons;
  var byKey = labelButtons.byKey;
  var noteKey = config.noteKey || "n";

  var state = {
    current: null, // the review task on screen (R)
    picked: null, // the label picked for it, not yet confirmed
    tags: [], // multi-label: the tags turned on for it, not yet confirmed
    none: false, // multi-label: "none of these" turned on
    busy: false, // a resolve is in flight
    loading: false, // a request for the next task is in flight
    acceptAfter: 0,
    resolved: 0,
  };

  // --- HTTP ---------------------------------------------------------------------------------

  var call = Q.apiClient(config);

  // --- words --------------------------------------------------------------------------------

  function percent(value) {
    return Math.round(value * 100) + "%";
  }

  function fixed(value) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(2) : null;
  }

  var excerpt = Q.excerpt;

  var LABEL_ORDER = config.labels.map(function (labelInfo) {
    return labelInfo.name;
  });

  // The names in the project's label order.
  function ordered(names) {
    return LABEL_ORDER.filter(function (name) {
      return names.indexOf(name) !== -1;
    });
  }

  // An answer: a label name, or a tag set (array of names).
  function words(answer) {
    if (typeof answer === "string") return answer;
    return answer.length ? answer.join(", ") : "none of these";
  }

  function answerOf(annotation) {
    return MULTI ? annotation.labels || [] : annotation.label;
  }

  // Whether a decision is ready to confirm (a label picked; multi-label: a tag on, or "none").
  function hasPick() {
    return MULTI ? state.tags.length > 0 || state.none : state.picked !== null;
  }

  // The decision to send: a label name, or the tag set.
  function decision() {
    return MULTI ? ordered(state.tags) : state.picked;
  }

  function reasonWords(review) {
    // The server states the reason from the stored reason and the item's actual figures
    // (labels' split, posterior, the threshold in force): no cap or threshold is filled in here.
    if (!review || !review.reason) return "";
    if (review.reason_text) return review.reason_text;
    return String(review.reason).replace(/_/g, " ");
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

  var announce = Q.announcer(el.announcer);
  var node = Q.node;
  var statusBar = Q.statusBar(el);
  var setStatus = statusBar.set;
  var reportError = statusBar.report;
  var poll = Q.poller(function () {
    loadNext({ quiet: true, message: "A new task is ready." });
  });

  function setOpen(open) {
    el.open.textContent = typeof open === "number" ? open.toLocaleString() : "–";
    root.dataset.open = typeof open === "number" ? String(open) : "";
  }

  function qualityWords(quality) {
    return typeof quality === "number" && isFinite(quality) ? percent(quality) + " DS accuracy" : "accuracy not known";
  }

  function renderVotes(annotations) {
    if (MULTI) return renderTagVotes(annotations);
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

  // Multi-label: each annotator's tag set; on each tag's button, how many chose it (of all).
  function renderTagVotes(annotations) {
    el.votes.textContent = "";
    var counts = {};
    var voters = {};
    var total = (annotations || []).length;
    (annotations || []).forEach(function (annotation) {
      var tags = ordered(answerOf(annotation));
      tags.forEach(function (name) {
        counts[name] = (counts[name] || 0) + 1;
        (voters[name] = voters[name] || []).push(annotation.username);
      });
      var li = node("li", "vote");
      li.appendChild(node("span", "voter", annotation.username));
      li.appendChild(document.createTextNode(" — "));
      li.appendChild(node("strong", "vote-label" + (tags.length ? "" : " is-none"), words(tags)));
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
      badge.textContent = n ? n + " of " + total : "";
      button.title = n ? "Chosen by " + voters[name].join(", ") : button.dataset.description || "";
      button.setAttribute("aria-label", n ? name + ", chosen by " + voters[name].join(", ") : name);
    });
  }

  // Multi-label: P(tag applies) per tag, most probable first, the disputed tags marked (and on
  // the buttons, each tag's figure).
  function renderTagPosterior(posterior, disputed) {
    el.posterior.textContent = "";
    disputed = disputed || [];
    var p = {};
    var rows = (posterior || []).slice().sort(function (a, b) {
      return b.p - a.p;
    });
    rows.forEach(function (row) {
      p[row.label] = row.p;
    });
    var shown = rows.filter(function (row, index) {
      return index < TOP_TAGS || disputed.indexOf(row.label) !== -1;
    });
    shown.forEach(function (row) {
      var isDisputed = disputed.indexOf(row.label) !== -1;
      var li = node("li", "posterior-row" + (row.p >= 0.5 ? " is-top" : "") + (isDisputed ? " is-disputed" : ""));
      li.dataset.label = row.label;
      li.appendChild(node("span", "posterior-label", row.label));
      var track = node("span", "posterior-track");
      track.setAttribute("aria-hidden", "true");
      var bar = node("span", "posterior-bar");
      bar.style.width = Math.max(0, Math.min(100, row.p * 100)).toFixed(1) + "%";
      track.appendChild(bar);
      li.appendChild(track);
      li.appendChild(node("span", "posterior-p", percent(row.p)));
      if (isDisputed) li.appendChild(node("span", "visually-hidden", " (disputed)"));
      el.posterior.appendChild(li);
    });
    el.posterior.hidden = shown.length === 0;
    el.posteriorNone.hidden = shown.length !== 0;
    if (el.disputed) {
      el.disputedNames.textContent = disputed.join(", ");
      el.disputed.hidden = disputed.length === 0;
    }
    buttons.forEach(function (button) {
      var name = button.dataset.label;
      var isDisputed = disputed.indexOf(name) !== -1;
      button.classList.toggle("is-disputed", isDisputed);
      var badge = button.querySelector("[data-p]");
      if (badge) {
        var known = typeof p[name] === "number";
        badge.hidden = !known && !isDisputed;
        badge.textContent = (known ? percent(p[name]) : "0%") + (isDisputed ? " · disputed" : "");
      }
      if (isDisputed) button.setAttribute("aria-label", button.getAttribute("aria-label") + ", disputed");
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
    var answer = prediction ? (MULTI ? prediction.labels : prediction.label) : null;
    if (!answer) {
      el.model.hidden = true;
      return;
    }
    el.modelLabel.textContent = words(MULTI ? ordered(answer) : answer);
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
      var picked = MULTI
        ? state.tags.indexOf(button.dataset.label) !== -1
        : state.picked !== null && button.dataset.label === state.picked;
      button.classList.toggle("is-chosen", picked);
      button.setAttribute("aria-pressed", picked ? "true" : "false");
    });
    if (el.none) {
      el.none.setAttribute("aria-disabled", off ? "true" : "false");
      el.none.classList.toggle("is-chosen", state.none);
      el.none.setAttribute("aria-pressed", state.none ? "true" : "false");
    }
    var picked = hasPick();
    var ready = !off && picked;
    el.confirm.setAttribute("aria-disabled", ready ? "false" : "true");
    el.confirmText.textContent = picked ? "Resolve as " + words(decision()) : "Resolve";
    if (picked) el.pickHint.classList.remove("is-nudged");
    el.pickHint.textContent = state.busy
      ? "Saving…"
      : picked
        ? document.activeElement === el.note
          ? "Ctrl+Enter confirms"
          : MULTI
            ? "Enter confirms · Esc turns every tag off"
            : "Enter confirms · Esc clears"
        : MULTI
          ? "Turn on the tags that apply, then confirm."
          : "Pick a label, then confirm.";
    root.dataset.accepting = canAct() ? "true" : "false";
    root.dataset.review = state.current ? String(state.current.id) : "";
    root.dataset.externalId = state.current ? String(state.current.item.external_id) : "";
    root.dataset.picked = MULTI ? ordered(state.tags).join("|") : state.picked || "";
    if (MULTI) root.dataset.none = String(state.none);
  }

  function setView(view) {
    // view: "loading" | "ready" | "saving" | "empty"
    Q.setView(root, el, view, "Loading the next task…");
    if (view === "loading") el.reason.hidden = true;
  }

  function show(review, message) {
    state.current = review;
    state.picked = null;
    state.tags = [];
    state.none = false;
    var item = review.item || {};
    setView("ready");
    Q.showItem(el, item);
    el.reason.textContent = reasonWords(review);
    el.reason.hidden = !review.reason;
    root.dataset.reason = review.reason || "";
    renderVotes(review.annotations);
    if (MULTI) renderTagPosterior(review.posterior, review.disputed);
    else renderPosterior(review.posterior);
    renderModel(review.model_prediction);
    el.note.value = review.note || "";
    if (el.filter) filter.clear();
    state.acceptAfter = performance.now() + SETTLE_MS;
    window.setTimeout(updateControls, SETTLE_MS + 5);
    updateControls();
    if (el.panel.getBoundingClientRect().top < 0) el.panel.scrollIntoView({ block: "start" });
    var said = (review.annotations || []).map(function (annotation) {
      return annotation.username + " chose " + words(answerOf(annotation));
    });
    if (MULTI && review.disputed && review.disputed.length) said.push("Disputed: " + review.disputed.join(", "));
    announce(
      (message ? message + " " : "") +
        "Review task. " +
        reasonWords(review) +
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

  function showEmpty() {
    var wasEmpty = root.dataset.state === "empty";
    state.current = null;
    state.picked = null;
    state.tags = [];
    state.none = false;
    setView("empty");
    updateControls();
    if (!wasEmpty) announce("No disagreements waiting.");
    poll.schedule(POLL_MS);
  }

  function loadNext(options) {
    options = options || {};
    if (state.loading || state.current) return Promise.resolve();
    poll.stop();
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
          poll.schedule(POLL_MS);
          return;
        }
        reportError(error, "load the next review task", function () {
          loadNext(options);
        });
      });
  }

  // --- actions ----------------------------------------------------------------------------

  function pick(labelName) {
    if (!canAct()) return;
    if (MULTI) return toggle(labelName);
    state.picked = labelName;
    updateControls();
    announce("Picked " + labelName + ". Press Enter to resolve, Escape to clear.");
  }

  function clearPick() {
    if (!hasPick() || state.busy) return;
    state.picked = null;
    state.tags = [];
    state.none = false;
    updateControls();
    announce(MULTI ? "Every tag off." : "Pick cleared.");
  }

  // Multi-label: a tag on or off.
  function toggle(labelName) {
    var at = state.tags.indexOf(labelName);
    if (at === -1) state.tags.push(labelName);
    else state.tags.splice(at, 1);
    state.none = false;
    updateControls();
    var now = ordered(state.tags);
    announce(
      labelName + (at === -1 ? " on. " : " off. ") + (now.length ? "Tags on: " + now.join(", ") + "." : "No tag on.")
    );
  }

  function toggleNone() {
    if (!canAct()) return;
    if (!ALLOW_EMPTY) {
      setStatus("This project needs at least one tag per item.", { kind: "notice", dismissible: true });
      return;
    }
    state.none = !state.none;
    if (state.none) state.tags = [];
    updateControls();
    announce(state.none ? "None of these. Press Enter to resolve." : "None of these: off.");
  }

  function confirm() {
    if (!canAct()) return;
    if (!hasPick()) {
      announce(MULTI ? "Turn on a tag first" + (ALLOW_EMPTY ? ", or none of these." : ".") : "Pick a label first.");
      el.pickHint.classList.add("is-nudged");
      window.setTimeout(function () {
        el.pickHint.classList.remove("is-nudged");
      }, 600);
      return;
    }
    var review = state.current;
    var labelName = decision();
    var note = el.note.value.trim();
    var fromNote = document.activeElement === el.note;
    state.busy = true;
    setStatus(null);
    root.dataset.state = "saving";
    updateControls();
    var body = MULTI ? { labels: labelName, note: note } : { label: labelName, note: note };
    call("POST", "reviews/" + review.id + "/resolve", body)
      .then(function () {
        state.busy = false;
        state.resolved += 1;
        el.resolved.textContent = state.resolved.toLocaleString();
        state.current = null;
        state.picked = null;
        state.tags = [];
        state.none = false;
        el.note.value = "";
        if (fromNote) el.text.focus({ preventScroll: true });
        loadAgreement();
        return loadNext({ message: "Resolved as " + words(labelName) + "." });
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
          state.tags = [];
          state.none = false;
          el.note.value = "";
          return loadNext({ message: "Not saved." }).then(function () {
            setStatus("Your decision for #" + review.item.external_id + " was not saved: " + why + ".", {
              kind: "notice",
              dismissible: true,
            });
          });
        }
        reportError(error, "resolve as “" + words(labelName) + "”", confirm, {
          kept: "Your pick and note are kept. ",
          focusRetry: true,
        });
      });
  }

  // --- label filter -----------------------------------------------------------------------

  var filter = Q.labelFilter(el.filter, buttons, el.noMatch, function (event) {
    if (event.key === "Enter" && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      var first = filter.first();
      if (first && canAct()) {
        pick(first.dataset.label);
        filter.clear();
        el.text.focus({ preventScroll: true });
      }
    } else if (event.key === "Escape") {
      event.preventDefault();
      filter.clear();
      el.text.focus({ preventScroll: true });
    }
  });

  // --- events -----------------------------------------------------------------------------

  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      pick(button.dataset.label);
    });
  });
  el.confirm.addEventListener("click", function () {
    var resolving = canAct() && hasPick();
    confirm();
    // A tapped confirm button keeps no focus (nor its highlight) for the next task.
    if (resolving) el.text.focus({ preventScroll: true });
  });
  if (el.none) el.none.addEventListener("click", toggleNone);
  el.note.addEventListener("focus", updateControls);
  el.note.addEventListener("blur", updateControls);
  el.check.addEventListener("click", function () {
    loadNext({ quiet: true, message: "A new task is ready." });
  });

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
    if (Q.isTyping(target)) {
      if (target === el.note && event.key === "Escape") {
        event.preventDefault();
        el.text.focus({ preventScroll: true }); // the note stays as typed
      }
      return;
    }
    if (event.key === "Enter") {
      if (target && target.classList && target.classList.contains("label-btn")) {
        // Enter on a label button picks it; on the picked one, it confirms. Multi-label: Enter
        // confirms the tags turned on (Space turns the focused one on or off).
        event.preventDefault();
        if (event.repeat) return;
        if (MULTI || state.picked === target.dataset.label) confirm();
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
      if (hasPick()) {
        event.preventDefault();
        clearPick();
      }
      return;
    }
    if (filter.slashKey(event)) return;
    if (event.key.length !== 1) return;
    if (MULTI && event.key === NONE_KEY) {
      event.preventDefault();
      if (!event.repeat) toggleNone();
      return;
    }
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
    if (document.visibilityState === "visible") poll.resume();
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
