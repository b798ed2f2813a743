/* Quorum labelling page: shows one item at a time, keeps the next one leased in the background
 * (prefetch), submits labels, skips and undoes through the REST API without page reloads.
 *
 * Multi-label projects (config.taskType "multi_label"): the answer is a tag set. A label's key (or
 * a click) turns its tag on or off, Enter saves the tags turned on, config.noneKey turns "none of
 * these" on (only where config.allowEmptyTags; an empty set is refused otherwise), Shift+Enter
 * takes the model's suggested tags without saving them.
 *
 * API used (all JSON, session cookie + CSRF header):
 *   POST {api}projects/{id}/next            {held: [assignment ids], suggest: bool}
 *   POST {api}assignments/{id}/annotation   {label, time_spent_ms} (multi-label: {labels: [names], time_spent_ms})
 *   POST {api}assignments/{id}/skip         {reason?}
 *   POST {api}annotations/{id}/undo
 *   PATCH {api}annotations/{id}             {label} (multi-label: {labels})
 */
(function () {
  "use strict";

  var root = document.getElementById("labeller");
  var configNode = document.getElementById("labeller-config");
  if (!root || !configNode) return;
  var config = JSON.parse(configNode.textContent);
  var Q = window.Quorum;

  var SUGGEST_KEY = "quorum.suggest";
  var SETTLE_MS = 200; // input right after a new item appears waits (key presses are queued, not lost)
  var MAX_PENDING = 5; // key presses kept while the page cannot take them yet
  var HISTORY = 20; // labels the page can undo or change (the "Recently labelled" list shows 10)
  var RECENT_SHOWN = 10;
  var CHORD_PREFIXES = config.chordPrefixes || ""; // the first key of a two-key label shortcut
  var POLL_REFILL_MS = 5000; // empty queue while a refill runs
  var POLL_IDLE_MS = 30000; // empty queue, nothing being prepared
  var EXPIRY_MARGIN_MS = 5000; // a prefetched lease this close to expiry is not shown
  var MAX_TIME_MS = 86400000;
  var MULTI = config.taskType === "multi_label"; // tag sets: keys toggle, Enter saves
  var ALLOW_EMPTY = MULTI && config.allowEmptyTags === true; // "none of these" is an answer
  var NONE_KEY = config.noneKey || ""; // "": no key (the button only)
  var TAG_P_SHOWN = 0.2; // a tag outside the model's set shows its probability from this one on

  function $(selector) {
    return root.querySelector(selector);
  }

  var el = Q.elements(root, {
    suggestion: $("#suggestion"),
    suggestionLabel: $('[data-suggestion="label"]'),
    suggestionConfidence: $('[data-suggestion="confidence"]'),
    emptyIdle: $("[data-empty-idle]"),
    emptyRefill: $("[data-empty-refill]"),
    emptyPaused: $("[data-empty-paused]"),
    emptyHeading: $("#empty-heading"),
    grid: $("#label-grid"),
    skipForm: $("#skip-form"),
    skipReason: $("#skip-reason"),
    skip: $('[data-action="skip"]'),
    undo: $('[data-action="undo"]'),
    toggle: $("#suggest-toggle"),
    recent: $("#recent"),
    recentList: $("#recent-list"),
    none: $('[data-action="none"]'),
    saveTags: $('[data-action="save-tags"]'),
    saveText: $('[data-save="text"]'),
    tagsPicked: $("#tags-picked"),
    useSuggestion: $('[data-action="use-suggestion"]'),
    progress: {
      done_today: $('[data-progress="done_today"]'),
      remaining: $('[data-progress="remaining"]'),
      refill: $('[data-progress="refill"]'),
    },
  });
  var labelButtons = Q.labelButtons(root);
  var buttons = labelButtons.buttons;
  var byKey = labelButtons.byKey;

  var state = {
    current: null, // the entry on screen: {assignment, suggestion, suggested, expiresAt, elapsedMs, shownAt, picked, none}
    upcoming: [], // entries leased and waiting (the prefetched one, or one put aside by undo)
    busy: false, // a submit, skip or undo is in flight
    saving: null, // the entry whose label is being saved (it may already be off screen)
    loading: false, // a request for the next item (not a prefetch) is in flight
    prefetching: null, // promise of the prefetch in flight
    history: [], // newest last: {id, label, entry, timeMs, final}: what undo brings back, what can be changed (label: a name, or the tag set)
    pending: [], // key actions pressed while the page could not take them: applied in order
    chord: null, // the first key of a two-key shortcut, waiting for the second
    lastPress: null, // {key, at}: the same label key twice within SETTLE_MS is one press
    unsaved: null, // a chosen label that failed to save
    acceptAfter: 0,
    clockOffset: 0, // server clock minus ours, from the Date header
    suggest: readSuggest(),
  };

  // --- HTTP ---------------------------------------------------------------------------------

  var call = Q.apiClient(config, function (response) {
    var date = Date.parse(response.headers.get("Date") || "");
    if (!isNaN(date)) state.clockOffset = date - Date.now();
  });
  var isAuthError = Q.isAuthError;

  // --- entries, clock ---------------------------------------------------------------------

  function entryFrom(data) {
    var assignment = data.assignment;
    var expires = Date.parse(assignment.expires_at || "");
    return {
      assignment: assignment,
      suggestion: data.suggestion || null,
      suggested: state.suggest,
      expiresAt: isNaN(expires) ? Infinity : expires - state.clockOffset,
      elapsedMs: 0,
      shownAt: null,
      picked: [], // multi-label: the tags turned on, in the order they were
      none: false, // multi-label: "none of these" turned on
    };
  }

  function heldIds() {
    var ids = state.upcoming.map(function (entry) {
      return entry.assignment.id;
    });
    if (state.current) ids.unshift(state.current.assignment.id);
    if (state.saving && ids.indexOf(state.saving.assignment.id) === -1) ids.push(state.saving.assignment.id);
    return ids;
  }

  function startClock(entry) {
    if (entry && entry.shownAt === null && document.visibilityState === "visible") entry.shownAt = performance.now();
  }

  function pauseClock(entry) {
    if (entry && entry.shownAt !== null) {
      entry.elapsedMs += performance.now() - entry.shownAt;
      entry.shownAt = null;
    }
  }

  function timeSpent(entry) {
    var ms = entry.elapsedMs + (entry.shownAt !== null ? performance.now() - entry.shownAt : 0);
    return Math.max(0, Math.min(Math.round(ms), MAX_TIME_MS));
  }

  // --- rendering --------------------------------------------------------------------------

  var announce = Q.announcer(el.announcer);
  var excerpt = Q.excerpt;
  var statusBar = Q.statusBar(el);
  var setStatus = statusBar.set;
  var reportError = statusBar.report;
  var poll = Q.poller(function () {
    loadNext({ quiet: true, message: "A new item is ready." });
  });

  function formatNumber(value) {
    return typeof value === "number" ? value.toLocaleString() : "–";
  }

  function updateProgress(progress) {
    if (!progress) return;
    el.progress.done_today.textContent = formatNumber(progress.done_today);
    el.progress.remaining.textContent = formatNumber(progress.remaining);
    el.progress.refill.hidden = !progress.refill_running;
  }

  function renderSuggestion() {
    var entry = state.current;
    var suggestion = entry && entry.suggestion;
    if (MULTI) return renderTagSuggestion(entry, suggestion);
    buttons.forEach(function (button) {
      button.classList.toggle(
        "is-suggested",
        Boolean(state.suggest && suggestion && suggestion.label === button.dataset.label)
      );
    });
    if (!state.suggest || !entry) {
      el.suggestion.hidden = true;
      return;
    }
    el.suggestion.classList.remove("is-note");
    if (suggestion && suggestion.label) {
      el.suggestion.firstChild.textContent = "Model suggests ";
      el.suggestionLabel.textContent = suggestion.label;
      el.suggestionConfidence.textContent =
        typeof suggestion.confidence === "number" ? "(" + Math.round(suggestion.confidence * 100) + "% sure)" : "";
      el.suggestion.hidden = false;
    } else if (!entry.suggested) {
      el.suggestion.firstChild.textContent = "Asking the model…";
      el.suggestionLabel.textContent = "";
      el.suggestionConfidence.textContent = "";
      el.suggestion.classList.add("is-note");
      el.suggestion.hidden = false;
    } else {
      el.suggestion.hidden = true;
    }
  }

  // answer: a label name, a tag set (array of names) or null (none marked).
  function markChosen(answer, className) {
    var names = answer === null ? [] : [].concat(answer);
    buttons.forEach(function (button) {
      button.classList.toggle(className, names.indexOf(button.dataset.label) !== -1);
    });
  }

  // --- answers: a label name, or on multi-label projects a tag set ----------------------------

  var LABEL_ORDER = config.labels.map(function (labelInfo) {
    return labelInfo.name;
  });

  // The names in the project's label order (the order the API answers tag sets in).
  function ordered(names) {
    return LABEL_ORDER.filter(function (name) {
      return names.indexOf(name) !== -1;
    });
  }

  function words(answer) {
    if (typeof answer === "string") return answer;
    return answer.length ? answer.join(", ") : "none of these";
  }

  function answerBody(answer) {
    return typeof answer === "string" ? { label: answer } : { labels: answer };
  }

  function sameAnswer(a, b) {
    if (typeof a === "string" || typeof b === "string") return a === b;
    return (
      a.length === b.length &&
      a.every(function (name, index) {
        return name === b[index];
      })
    );
  }

  function percentOf(p) {
    return Math.round(p * 100) + "%";
  }

  // Multi-label: the model's tags stand out with their probability; nothing is turned on by it.
  function renderTagSuggestion(entry, suggestion) {
    var on = Boolean(state.suggest && entry && suggestion && suggestion.labels);
    var p = {};
    if (on) {
      (suggestion.tags || []).forEach(function (tag) {
        p[tag.label] = tag.p;
      });
    }
    buttons.forEach(function (button) {
      var name = button.dataset.label;
      var suggested = on && suggestion.labels.indexOf(name) !== -1;
      var shown = on && typeof p[name] === "number" && (suggested || p[name] >= TAG_P_SHOWN);
      button.classList.toggle("is-suggested", suggested);
      var badge = button.querySelector("[data-p]");
      if (badge) {
        badge.hidden = !shown;
        badge.textContent = shown ? "model " + percentOf(p[name]) : "";
      }
    });
    if (el.useSuggestion) el.useSuggestion.hidden = !on;
    if (!state.suggest || !entry) {
      el.suggestion.hidden = true;
      return;
    }
    el.suggestion.classList.remove("is-note");
    if (on) {
      el.suggestion.firstChild.textContent = "Model suggests ";
      el.suggestionLabel.textContent = words(ordered(suggestion.labels));
      el.suggestionConfidence.textContent =
        typeof suggestion.confidence === "number" ? "(" + percentOf(suggestion.confidence) + " sure)" : "";
      el.suggestion.hidden = false;
    } else if (!entry.suggested) {
      el.suggestion.firstChild.textContent = "Asking the model…";
      el.suggestionLabel.textContent = "";
      el.suggestionConfidence.textContent = "";
      el.suggestion.classList.add("is-note");
      el.suggestion.hidden = false;
    } else {
      el.suggestion.hidden = true;
    }
  }

  // Multi-label: the pressed state of the tags, "none of these" and the save button.
  function renderPicked(labelsOff) {
    var entry = state.current;
    var picked = entry ? ordered(entry.picked) : [];
    var none = Boolean(entry && entry.none);
    buttons.forEach(function (button) {
      var on = picked.indexOf(button.dataset.label) !== -1;
      button.classList.toggle("is-chosen", on);
      button.setAttribute("aria-pressed", on ? "true" : "false");
    });
    if (el.none) {
      el.none.classList.toggle("is-chosen", none);
      el.none.setAttribute("aria-pressed", none ? "true" : "false");
      el.none.setAttribute("aria-disabled", labelsOff ? "true" : "false");
    }
    if (el.saveTags) {
      el.saveTags.setAttribute("aria-disabled", labelsOff || !(picked.length || none) ? "true" : "false");
      el.saveText.textContent = picked.length
        ? "Save " + picked.length + (picked.length === 1 ? " tag" : " tags")
        : none
          ? "Save “none of these”"
          : "Save tags";
      el.tagsPicked.textContent = picked.length ? "On: " + picked.join(", ") : none ? "None of these." : "No tag on yet.";
    }
    root.dataset.picked = picked.join("|");
    root.dataset.none = String(none);
  }

  function canAct() {
    return Boolean(state.current) && !state.busy && performance.now() >= state.acceptAfter;
  }

  function updateControls() {
    var labelsOff = !state.current || state.busy;
    buttons.forEach(function (button) {
      button.setAttribute("aria-disabled", labelsOff ? "true" : "false");
    });
    el.skip.setAttribute("aria-disabled", labelsOff ? "true" : "false");
    el.undo.setAttribute("aria-disabled", !undoable() || state.busy ? "true" : "false");
    if (MULTI) renderPicked(labelsOff);
    root.dataset.accepting = canAct() ? "true" : "false";
    root.dataset.queued = String(state.pending.length);
    if (state.pending.length && canAct()) window.setTimeout(drain, 0);
    root.dataset.assignment = state.current ? String(state.current.assignment.id) : "";
    root.dataset.externalId = state.current ? String(state.current.assignment.item.external_id) : "";
    root.dataset.prefetched = String(state.upcoming.length);
  }

  function setView(view) {
    // view: "loading" | "ready" | "saving" | "empty"
    Q.setView(root, el, view, "Loading the next item…");
    if (view === "loading") el.suggestion.hidden = true;
  }

  function show(entry, message) {
    state.current = entry;
    var item = entry.assignment.item;
    setView("ready");
    showPaused(null);
    Q.showItem(el, item);
    renderSuggestion();
    markChosen(null, "is-chosen");
    markChosen(null, "is-previous");
    startClock(entry);
    // On a phone the buttons sit below the text: after a tap near the bottom, bring the new text
    // back on screen.
    if (el.panel.getBoundingClientRect().top < 0) el.panel.scrollIntoView({ block: "start" });
    state.acceptAfter = performance.now() + SETTLE_MS;
    window.setTimeout(updateControls, SETTLE_MS + 5);
    updateControls();
    announce((message ? message + " " : "") + "New item: " + excerpt(item.text, 200));
  }

  // --- loading items ----------------------------------------------------------------------

  // Quality control paused this annotator (message: why) or not (null): the empty state says so.
  function showPaused(message) {
    var paused = message !== null;
    root.dataset.paused = String(paused);
    if (!el.emptyHeading.dataset.idleText) el.emptyHeading.dataset.idleText = el.emptyHeading.textContent;
    el.emptyHeading.textContent = paused ? "You are paused on this project" : el.emptyHeading.dataset.idleText;
    el.emptyPaused.textContent = paused ? message : "";
    el.emptyPaused.hidden = !paused;
  }

  function showEmpty(data) {
    var progress = data.progress || {};
    var wasEmpty = root.dataset.state === "empty";
    var paused = data.code === "paused";
    state.current = null;
    dropPending();
    if (paused) state.upcoming = []; // quality control ended those leases too
    setView("empty");
    showPaused(paused ? data.message || "" : null);
    el.emptyRefill.hidden = paused || !progress.refill_running;
    el.emptyIdle.hidden = paused || Boolean(progress.refill_running);
    updateControls();
    if (paused) {
      if (!wasEmpty) announce("You are paused on this project. " + (data.message || ""));
      poll.schedule(POLL_IDLE_MS); // a reinstatement shows up by itself
      return;
    }
    if (data.code === "lease_limit") {
      setStatus(
        "You already hold the most items at once, probably in another tab. Finish them there, or wait until their hold runs out.",
        { kind: "notice" }
      );
    }
    if (!wasEmpty) {
      announce(
        "No items to label right now." + (progress.refill_running ? " More items are being prepared." : "")
      );
    }
    poll.schedule(progress.refill_running ? POLL_REFILL_MS : POLL_IDLE_MS);
  }

  function dropExpired() {
    var now = Date.now();
    state.upcoming = state.upcoming.filter(function (entry) {
      return entry.expiresAt - EXPIRY_MARGIN_MS > now;
    });
  }

  function loadNext(options) {
    options = options || {};
    if (state.loading || state.current) return Promise.resolve();
    poll.stop();
    state.loading = true;
    if (!options.quiet) setView("loading");
    updateControls();
    return call("POST", "projects/" + config.projectId + "/next", { held: heldIds(), suggest: state.suggest })
      .then(function (data) {
        state.loading = false;
        updateProgress(data.progress);
        if (state.current) return; // an undo filled the screen meanwhile
        if (data.assignment && heldIds().indexOf(data.assignment.id) === -1) {
          if (root.dataset.state === "empty") setStatus(null);
          show(entryFrom(data), options.message);
          prefetch();
        } else {
          showEmpty(data);
        }
      })
      .catch(function (error) {
        state.loading = false;
        if (state.current) return;
        if (options.quiet && error.network) {
          poll.schedule(POLL_IDLE_MS); // stay in the empty state, try again later
          return;
        }
        reportError(error, "load the next item", function () {
          loadNext(options);
        });
      });
  }

  function prefetch() {
    if (state.prefetching || !state.current || state.upcoming.length) return state.prefetching;
    var duringSave = Boolean(state.saving);
    var retry = false;
    state.prefetching = call("POST", "projects/" + config.projectId + "/next", {
      held: heldIds(),
      suggest: state.suggest,
    })
      .then(function (data) {
        updateProgress(data.progress);
        if (data.code === "paused") {
          // The last answer paused this annotator: the item on screen is no longer theirs.
          pauseClock(state.current);
          showEmpty(data);
          return;
        }
        if (data.assignment && heldIds().indexOf(data.assignment.id) === -1) state.upcoming.push(entryFrom(data));
        // Asked while a save was still counted as a live lease: ask again once it is through.
        retry = !data.assignment && data.code === "lease_limit" && duringSave;
      })
      .catch(function (error) {
        // Not shown: the next item is requested directly after the current one anyway.
        if (isAuthError(error)) reportError(error, "load the next item", null);
      })
      .then(function () {
        state.prefetching = null;
        updateControls();
        if (retry && !state.saving) prefetch();
      });
    return state.prefetching;
  }

  function advance(message) {
    pauseClock(state.current);
    state.current = null;
    updateControls();
    return Promise.resolve(state.prefetching).then(function () {
      dropExpired();
      var next = state.upcoming.shift();
      if (next) {
        show(next, message);
        prefetch();
      } else {
        return loadNext({ message: message });
      }
    });
  }

  // --- actions ----------------------------------------------------------------------------

  function choose(labelName) {
    if (!canAct()) return;
    if (MULTI) return toggle(labelName);
    submitLabel(state.current, labelName, timeSpent(state.current));
  }

  // --- multi-label: turning tags on and off, saving the set -----------------------------------

  function toggle(labelName) {
    var entry = state.current;
    var at = entry.picked.indexOf(labelName);
    if (at === -1) entry.picked.push(labelName);
    else entry.picked.splice(at, 1);
    entry.none = false;
    updateControls();
    var now = ordered(entry.picked);
    announce(labelName + (at === -1 ? " on. " : " off. ") + (now.length ? "Tags on: " + now.join(", ") + "." : "No tag on."));
  }

  function emptyRefused() {
    setStatus("No tag is on: this project needs at least one tag per item.", { kind: "notice", dismissible: true });
  }

  function toggleNone() {
    if (!canAct()) return;
    if (!ALLOW_EMPTY) return emptyRefused();
    var entry = state.current;
    entry.none = !entry.none;
    if (entry.none) entry.picked = [];
    updateControls();
    announce(entry.none ? "None of these. Enter saves it." : "None of these: off.");
  }

  function saveTags() {
    if (!canAct()) return;
    var entry = state.current;
    var answer = ordered(entry.picked);
    if (!answer.length && !entry.none) {
      if (!ALLOW_EMPTY) return emptyRefused();
      setStatus("No tag is on: turn on the tags that apply, or “None of these”" + (NONE_KEY ? " (" + NONE_KEY + ")" : "") + " when none does.", {
        kind: "notice",
        dismissible: true,
      });
      return;
    }
    submitLabel(entry, answer, timeSpent(entry));
  }

  // labelName: the answer, a label name or (multi-label) the tag set.
  function submitLabel(entry, labelName, timeMs) {
    if (state.busy || state.current !== entry) return;
    state.busy = true;
    state.saving = entry;
    state.unsaved = labelName;
    pauseClock(entry);
    markChosen(labelName, "is-chosen");
    setStatus(null);
    root.dataset.state = "saving";
    var body = answerBody(labelName);
    body.time_spent_ms = timeMs;
    var request = call("POST", "assignments/" + entry.assignment.id + "/annotation", body);
    // With the next item already leased, show it at once; input waits until the save is confirmed
    // (typically before the new item's settle time is over). A failed save brings this item back.
    dropExpired();
    var early = state.upcoming.length > 0 && !state.prefetching;
    if (early) advance("Saved as " + words(labelName) + ".");
    updateControls();
    request.then(
      function (data) {
        state.busy = false;
        state.saving = null;
        state.unsaved = null;
        remember({ id: data.annotation.id, label: labelName, entry: entry, timeMs: timeMs, final: false });
        updateProgress(data.progress);
        if (data.paused) {
          // This answer paused the annotator: the items in hand are no longer theirs (even one a
          // prefetch leased while the answer was being saved), so the page says why at once.
          state.upcoming = [];
          pauseClock(state.current);
          return showEmpty({ code: "paused", message: data.paused, progress: data.progress });
        }
        if (!early) return advance("Saved as " + words(labelName) + ".");
        if (state.current) root.dataset.state = "ready";
        updateControls();
        prefetch();
      },
      function (error) {
        state.busy = false;
        state.saving = null;
        submitFailed(entry, labelName, timeMs, error, early);
      }
    );
  }

  function submitFailed(entry, labelName, timeMs, error, early) {
    if (error.code !== "lease_expired" && error.code !== "item_final" && error.code !== "skipped" && error.status !== 404) {
      dropPending(); // the page shows the failure: keys pressed meanwhile are not applied blindly
    }
    if (error.code === "paused") {
      state.unsaved = null;
      state.upcoming = [];
      pauseClock(state.current);
      state.current = null;
      return loadNext(); // answers "paused" with the reason, shown in place of the item
    }
    if (error.code === "lease_expired" || error.code === "item_final" || error.code === "skipped" || error.status === 404) {
      // Nothing to retry: say so, and go on with the next item.
      state.unsaved = null;
      var why =
        error.code === "item_final"
          ? "the item got its final label in the meantime."
          : error.code === "lease_expired"
            ? "your hold on the item ran out and it went back to the queue."
            : "the item is no longer yours to label.";
      var note = "“" + words(labelName) + "” for #" + entry.assignment.item.external_id + " was not saved: " + why;
      var next = early ? Promise.resolve() : advance();
      return next.then(function () {
        if (state.current) root.dataset.state = "ready";
        updateControls();
        if (early) prefetch();
        setStatus(note, { kind: "notice", dismissible: true });
      });
    }
    if (early && state.current !== entry) {
      // Bring the item back on screen; the one shown meanwhile comes next.
      if (state.current) {
        pauseClock(state.current);
        state.upcoming.unshift(state.current);
      }
      state.current = null;
      entry.elapsedMs = timeMs;
      show(entry, "Your label “" + words(labelName) + "” was not saved.");
    }
    root.dataset.state = "ready";
    markChosen(labelName, "is-chosen");
    updateControls();
    reportError(
      error,
      "save “" + words(labelName) + "”",
      function () {
        submitLabel(entry, labelName, timeMs);
      },
      { kept: "Your choice “" + words(labelName) + "” is kept. ", focusRetry: true }
    );
  }

  function skip() {
    if (!canAct()) return;
    var entry = state.current;
    var reason = el.skipReason.value.trim();
    state.busy = true;
    setStatus(null);
    root.dataset.state = "saving";
    updateControls();
    call("POST", "assignments/" + entry.assignment.id + "/skip", reason ? { reason: reason } : {})
      .then(function (data) {
        state.busy = false;
        el.skipReason.value = "";
        updateProgress(data.progress);
        return advance("Skipped.");
      })
      .catch(function (error) {
        state.busy = false;
        if (state.current !== entry) return;
        root.dataset.state = "ready";
        updateControls();
        if (error.code === "lease_expired" || error.code === "item_final" || error.status === 404) {
          return advance("Skipped.");
        }
        dropPending();
        reportError(error, "skip this item", skip, { focusRetry: true });
      });
  }

  function undo() {
    var last = undoable();
    if (!last || state.busy) return;
    state.busy = true;
    setStatus(null);
    updateControls();
    call("POST", "annotations/" + last.id + "/undo")
      .then(function (data) {
        state.busy = false;
        forget(last);
        if (state.current) {
          pauseClock(state.current);
          state.upcoming.unshift(state.current);
          state.current = null;
        }
        poll.stop();
        var entry = entryFrom(data);
        if (!entry.suggestion) {
          entry.suggestion = last.entry.suggestion;
          entry.suggested = last.entry.suggested;
        }
        entry.elapsedMs = last.timeMs;
        if (MULTI) {
          // The tags saved before are on again: change what is wrong and save.
          entry.picked = last.label.slice();
          entry.none = last.label.length === 0;
        }
        updateProgress(data.progress);
        show(entry, "Undone: back to the item you labelled “" + words(last.label) + "”.");
        markChosen(last.label, "is-previous");
        setStatus(
          MULTI
            ? "Undone. You had chosen “" + words(last.label) + "”; change the tags and press Enter."
            : "Undone. You had chosen “" + last.label + "”; pick a label again.",
          {
            kind: "notice",
            dismissible: true,
          }
        );
      })
      .catch(function (error) {
        state.busy = false;
        updateControls();
        if (error.code === "item_final" || error.status === 404 || error.status === 409) {
          last.final = true;
          renderRecent();
          updateControls();
          setStatus("Can't undo: " + (error.detail || "that annotation can no longer be changed") + ".", {
            kind: "notice",
            dismissible: true,
          });
          return;
        }
        reportError(error, "undo", undo, { focusRetry: true });
      });
  }

  // --- history: multi-level undo and the "Recently labelled" list ---------------------------

  function undoable() {
    for (var i = state.history.length - 1; i >= 0; i -= 1) {
      if (!state.history[i].final) return state.history[i];
    }
    return null;
  }

  function remember(record) {
    state.history.push(record);
    if (state.history.length > HISTORY) state.history.shift();
    renderRecent();
  }

  function forget(record) {
    state.history = state.history.filter(function (other) {
      return other !== record;
    });
    renderRecent();
  }

  function renderRecent() {
    var shown = state.history.slice(-RECENT_SHOWN).reverse();
    el.recentList.textContent = "";
    el.recent.hidden = shown.length === 0;
    shown.forEach(function (record) {
      var item = record.entry.assignment.item;
      var row = Q.node("li", "recent-row" + (record.final ? " is-final" : ""));
      row.dataset.annotation = String(record.id);
      row.dataset.externalId = String(item.external_id);
      var text = Q.node("span", "recent-text", excerpt(item.text, 80));
      text.title = excerpt(item.text, 400);
      row.appendChild(Q.node("span", "recent-id", "#" + item.external_id));
      row.appendChild(text);
      if (MULTI) {
        row.appendChild(tagEditor(record));
        if (record.final) row.appendChild(Q.node("span", "recent-state muted small", "final"));
        el.recentList.appendChild(row);
        return;
      }
      var select = Q.node("select", "recent-label");
      select.setAttribute("aria-label", "Label of #" + item.external_id);
      config.labels.forEach(function (labelInfo) {
        var option = Q.node("option", null, labelInfo.name);
        option.value = labelInfo.name;
        option.selected = labelInfo.name === record.label;
        select.appendChild(option);
      });
      select.disabled = record.final || record.changing === true;
      select.addEventListener("change", function () {
        changeLabel(record, select.value);
      });
      row.appendChild(select);
      if (record.final) row.appendChild(Q.node("span", "recent-state muted small", "final"));
      el.recentList.appendChild(row);
    });
  }

  // Multi-label: a recently saved tag set, and a form that changes it (while the item is open).
  function tagEditor(record) {
    var item = record.entry.assignment.item;
    if (record.final || record.changing) return Q.node("span", "recent-label recent-tags-text", words(record.label));
    var details = Q.node("details", "recent-tags");
    var summary = Q.node("summary", "recent-label", words(record.label));
    summary.title = "Change the tags of #" + item.external_id;
    details.appendChild(summary);
    var form = Q.node("form", "recent-tags-form");
    form.setAttribute("aria-label", "Tags of #" + item.external_id);
    config.labels.forEach(function (labelInfo) {
      var option = Q.node("label", "recent-tag");
      var box = Q.node("input");
      box.type = "checkbox";
      box.value = labelInfo.name;
      box.checked = record.label.indexOf(labelInfo.name) !== -1;
      option.appendChild(box);
      option.appendChild(document.createTextNode(" " + labelInfo.name));
      form.appendChild(option);
    });
    var save = Q.node("button", "secondary small", "Change");
    save.type = "submit";
    form.appendChild(save);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var names = Array.prototype.map.call(form.querySelectorAll("input:checked"), function (box) {
        return box.value;
      });
      if (!names.length && !ALLOW_EMPTY) return emptyRefused();
      changeLabel(record, ordered(names));
    });
    details.appendChild(form);
    return details;
  }

  function changeLabel(record, labelName) {
    if (sameAnswer(labelName, record.label)) return;
    var before = record.label;
    record.changing = true;
    renderRecent();
    call("PATCH", "annotations/" + record.id, answerBody(labelName))
      .then(function () {
        record.changing = false;
        record.label = labelName;
        renderRecent();
        setStatus("Changed #" + record.entry.assignment.item.external_id + " from “" + words(before) + "” to “" + words(labelName) + "”.", {
          kind: "notice",
          dismissible: true,
        });
      })
      .catch(function (error) {
        record.changing = false;
        if (error.code === "item_final" || error.status === 404 || error.status === 409) {
          record.final = true;
          renderRecent();
          setStatus(
            "Can't change #" + record.entry.assignment.item.external_id + ": " +
              (error.detail || "the item got its final label") + ".",
            { kind: "notice", dismissible: true }
          );
          return;
        }
        renderRecent();
        reportError(error, "change the label of #" + record.entry.assignment.item.external_id, function () {
          changeLabel(record, labelName);
        });
      });
  }

  // --- key actions: queued while the page cannot take them, chords, the suggestion ----------

  // action: {kind: "label", label, key} | {kind: "skip"} | {kind: "accept"}; multi-label also
  // {kind: "save"} | {kind: "none", key}
  function perform(action) {
    if (action.kind === "skip") skip();
    else if (action.kind === "accept") acceptSuggestion();
    else if (action.kind === "save") saveTags();
    else if (action.kind === "none") toggleNone();
    else choose(action.label);
  }

  function act(action) {
    var now = performance.now();
    var last = state.lastPress;
    state.lastPress = action.key ? { key: action.key, at: now } : null;
    if (canAct() && !state.pending.length) return perform(action);
    if (root.dataset.state === "empty") return; // no item on its way to apply it to
    if (action.key && last && last.key === action.key && now - last.at < SETTLE_MS) {
      // The same label key twice in a row, at once: one press (a bounce), not two items.
      announce("Pressed twice: counted once.");
      return;
    }
    if (state.pending.length >= MAX_PENDING) {
      setStatus("Too many keys ahead of the page: the last one was not used.", { kind: "notice", dismissible: true });
      return;
    }
    state.pending.push(action);
    updateControls();
  }

  function drain() {
    if (!state.pending.length || !canAct()) return;
    var action = state.pending.shift();
    root.dataset.queued = String(state.pending.length);
    perform(action);
  }

  function dropPending() {
    if (!state.pending.length) return;
    var count = state.pending.length;
    state.pending = [];
    root.dataset.queued = "0";
    announce(count === 1 ? "One key press was not used." : count + " key presses were not used.");
  }

  function acceptSuggestion() {
    var entry = state.current;
    if (!entry || !canAct()) return;
    var suggestion = entry.suggestion;
    if (MULTI) return takeSuggestedTags(entry, suggestion);
    if (state.suggest && suggestion && suggestion.label) return choose(suggestion.label);
    setStatus(
      state.suggest
        ? "The model has no suggestion for this item: pick a label."
        : "Turn on “Show model suggestion” to accept the model's label with Enter.",
      { kind: "notice", dismissible: true }
    );
  }

  // Multi-label: the model's tags are turned on (and only those); Enter then saves them.
  function takeSuggestedTags(entry, suggestion) {
    if (state.suggest && suggestion && suggestion.labels) {
      entry.picked = ordered(suggestion.labels);
      entry.none = ALLOW_EMPTY && entry.picked.length === 0;
      updateControls();
      announce("The model's tags are on: " + words(entry.picked) + ". Enter saves them.");
      return;
    }
    setStatus(
      state.suggest
        ? "The model has no suggestion for this item: turn on the tags that apply."
        : "Turn on “Show model suggestion” to take the model's tags with Shift+Enter.",
      { kind: "notice", dismissible: true }
    );
  }

  function setChord(prefix) {
    state.chord = prefix;
    root.dataset.chord = prefix || "";
  }

  // --- label filter -----------------------------------------------------------------------

  var filter = Q.labelFilter(el.filter, buttons, el.noMatch, function (event) {
    if (event.key === "Enter") {
      event.preventDefault();
      var first = filter.first();
      if (!first) return;
      act({ kind: "label", label: first.dataset.label, key: null });
      // Back to the page: the next label key picks a label instead of typing into the filter.
      filter.clear();
      el.text.focus({ preventScroll: true });
    } else if (event.key === "Escape") {
      event.preventDefault();
      filter.clear();
      el.text.focus();
    }
  });

  // --- suggestion toggle --------------------------------------------------------------------

  function readSuggest() {
    try {
      return window.localStorage.getItem(SUGGEST_KEY) === "1";
    } catch (error) {
      return false;
    }
  }

  function fetchSuggestions() {
    // Leases the page holds were fetched without a suggestion. Asking for "next" while holding
    // every other lease hands the same lease back, this time with the model's suggestion.
    var entry = state.current;
    if (!state.suggest || !entry || entry.suggested) return;
    if (state.busy || state.prefetching) {
      window.setTimeout(fetchSuggestions, 250);
      return;
    }
    call("POST", "projects/" + config.projectId + "/next", {
      held: heldIds().filter(function (id) {
        return id !== entry.assignment.id;
      }),
      suggest: true,
    })
      .then(function (data) {
        if (!data.assignment) return;
        if (data.assignment.id === entry.assignment.id) {
          entry.suggestion = data.suggestion || null;
          entry.suggested = true;
          if (state.current === entry) renderSuggestion();
        } else if (heldIds().indexOf(data.assignment.id) === -1 && state.upcoming.length < 2) {
          state.upcoming.push(entryFrom(data)); // a lease we did not know of: keep it for later
        }
      })
      .catch(function () {
        entry.suggested = true; // no suggestion this time; the next items bring theirs
        if (state.current === entry) renderSuggestion();
      })
      .then(function () {
        // The prefetched item: ask for it again with its suggestion.
        var stale = state.upcoming.filter(function (other) {
          return !other.suggested;
        });
        if (!state.suggest || !stale.length || state.prefetching) return;
        state.upcoming = state.upcoming.filter(function (other) {
          return other.suggested;
        });
        prefetch();
      });
  }

  el.toggle.checked = state.suggest;
  el.toggle.addEventListener("change", function () {
    state.suggest = el.toggle.checked;
    try {
      window.localStorage.setItem(SUGGEST_KEY, state.suggest ? "1" : "0");
    } catch (error) {
      /* private mode: the choice lasts for this page only */
    }
    renderSuggestion();
    fetchSuggestions();
  });

  // --- events -----------------------------------------------------------------------------

  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      var picked = canAct();
      choose(button.dataset.label);
      // A tapped button keeps no focus (nor its highlight) for the next item.
      if (picked) el.text.focus({ preventScroll: true });
    });
  });

  if (el.none) {
    el.none.addEventListener("click", function () {
      var picked = canAct();
      toggleNone();
      if (picked) el.text.focus({ preventScroll: true });
    });
  }
  if (el.saveTags) {
    el.saveTags.addEventListener("click", function () {
      var saving = canAct();
      saveTags();
      // Like a tapped tag, the tapped save button keeps no focus for the next item.
      if (saving) el.text.focus({ preventScroll: true });
    });
  }
  if (el.useSuggestion) {
    el.useSuggestion.addEventListener("click", function () {
      acceptSuggestion();
      el.text.focus({ preventScroll: true });
    });
  }

  el.skipForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var fromReason = document.activeElement === el.skipReason;
    act({ kind: "skip" });
    if (fromReason) el.text.focus({ preventScroll: true });
  });
  el.undo.addEventListener("click", undo);
  el.check.addEventListener("click", function () {
    loadNext({ quiet: true, message: "A new item is ready." });
  });

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    // The tag form of a recently labelled item keeps its keys (Space ticks, Enter changes).
    if (MULTI && event.target.closest && event.target.closest(".recent-tags")) return;
    if (Q.isTyping(event.target)) {
      if (event.target === el.skipReason && event.key === "Escape") {
        event.preventDefault();
        el.skipReason.value = "";
        el.text.focus();
      }
      return;
    }
    if (state.chord) {
      if (event.key === "Escape") {
        event.preventDefault();
        setChord(null);
        return;
      }
      if (event.key.length !== 1) return; // Shift and the like: still waiting for the second key
      event.preventDefault();
      var combo = state.chord + event.key.toLowerCase();
      setChord(null);
      var chordButton = byKey[combo];
      if (!chordButton) {
        setStatus("No label has the keys " + combo.split("").join(" then ") + ".", { kind: "notice", dismissible: true });
        return;
      }
      if (!event.repeat) act({ kind: "label", label: chordButton.dataset.label, key: combo });
      return;
    }
    if (event.key === "Enter") {
      // Enter on a button or a link keeps its own meaning.
      if (event.target.closest && event.target.closest("button, a, summary, select")) return;
      event.preventDefault();
      // Multi-label: Enter saves the tags turned on, Shift+Enter takes the model's.
      if (!event.repeat) act({ kind: MULTI && !event.shiftKey ? "save" : "accept" });
      return;
    }
    if (filter.slashKey(event)) return;
    if (event.key.length !== 1) return;
    if (MULTI && event.key === NONE_KEY) {
      event.preventDefault();
      if (!event.repeat) act({ kind: "none", key: NONE_KEY });
      return;
    }
    if (event.key === "S" && event.shiftKey) {
      event.preventDefault();
      el.skipReason.focus();
      return;
    }
    if (CHORD_PREFIXES.indexOf(event.key) !== -1) {
      event.preventDefault();
      setChord(event.key);
      return;
    }
    var key = event.key.toLowerCase();
    var button = byKey[key];
    if (key !== "s" && key !== "u" && !button) return;
    event.preventDefault();
    if (event.repeat) return; // a held key never labels a run of items
    if (key === "s") act({ kind: "skip" });
    else if (key === "u") {
      state.pending = [];
      undo();
    } else act({ kind: "label", label: button.dataset.label, key: key });
  });

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") {
      startClock(state.current);
      poll.resume();
    } else {
      pauseClock(state.current);
    }
  });

  window.addEventListener("beforeunload", function (event) {
    if (state.busy || state.unsaved) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  updateControls();
  loadNext();
})();
