/* Quorum page helpers shared by the labelling page (label.js) and the review page (review.js):
 * the API client (session cookie + CSRF header, JSON bodies and errors), the page's elements,
 * the status bar, the live region, the label filter, polling and the keyboard guard.
 *
 * A plain script that defines window.Quorum; the templates load it before the page's own script
 * (both with defer, so they run in order).
 */
(function () {
  "use strict";

  // --- HTTP ---------------------------------------------------------------------------------

  function ApiError(status, body, network) {
    this.status = status;
    this.body = body || {};
    this.network = Boolean(network);
    this.code = (body && body.code) || null;
    this.detail = (body && typeof body.detail === "string" && body.detail) || "";
  }

  function csrfToken(fallback) {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : fallback;
  }

  /* call(method, path, body) -> promise of the JSON answer ({} when empty); rejects with an
   * ApiError. config: the page's configuration ({apiRoot, csrfToken}); onResponse(response),
   * optional, sees every answer that arrives (headers included). */
  function apiClient(config, onResponse) {
    return function call(method, path, body) {
      var options = {
        method: method,
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken(config.csrfToken) },
      };
      if (body !== undefined) {
        options.headers["Content-Type"] = "application/json";
        options.body = JSON.stringify(body);
      }
      return fetch(config.apiRoot + path, options).then(
        function (response) {
          if (onResponse) onResponse(response);
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
    };
  }

  function isAuthError(error) {
    if (error.status === 401) return true;
    return error.status === 403 && /credentials|csrf|authenticat|log ?in/i.test(error.detail);
  }

  // --- elements -------------------------------------------------------------------------------

  /* The parts both pages have (see templates/annotation/_project_header.html), plus `own`. */
  function elements(root, own) {
    function $(selector) {
      return root.querySelector(selector);
    }
    var el = {
      workspace: $("#workspace"),
      panel: $("#item-panel"),
      text: $("#item-text"),
      externalId: $('[data-item="external_id"]'),
      metadata: $('[data-item="metadata"]'),
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
    };
    Object.keys(own || {}).forEach(function (name) {
      el[name] = own[name];
    });
    return el;
  }

  /* The label buttons, and those with a shortcut by their (lower-case) key. */
  function labelButtons(root) {
    var buttons = Array.prototype.slice.call(root.querySelectorAll(".label-btn"));
    var byKey = {};
    buttons.forEach(function (button) {
      if (button.dataset.key) byKey[button.dataset.key.toLowerCase()] = button;
    });
    return { buttons: buttons, byKey: byKey };
  }

  // --- rendering ------------------------------------------------------------------------------

  function announcer(region) {
    return function announce(message) {
      region.textContent = "";
      window.setTimeout(function () {
        region.textContent = message;
      }, 50);
    };
  }

  function excerpt(text, length) {
    var flat = String(text).replace(/\s+/g, " ").trim();
    return flat.length > length ? flat.slice(0, length - 1) + "…" : flat;
  }

  function node(tag, className, text) {
    var element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined && text !== null) element.textContent = text;
    return element;
  }

  function renderMetadata(dl, metadata) {
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

  /* Puts `item` ({text, external_id, metadata}) in the text panel, scrolled to its start. */
  function showItem(el, item) {
    el.text.classList.remove("is-placeholder");
    el.text.textContent = item.text;
    el.text.scrollTop = 0;
    el.externalId.textContent = item.external_id;
    renderMetadata(el.metadata, item.metadata);
  }

  /* view: "loading" | "ready" | "saving" | "empty"; loadingText fills the text panel meanwhile. */
  function setView(root, el, view, loadingText) {
    root.dataset.state = view;
    var empty = view === "empty";
    el.empty.hidden = !empty;
    el.workspace.hidden = empty;
    el.panel.setAttribute("aria-busy", view === "loading" ? "true" : "false");
    if (view === "loading") {
      el.text.textContent = loadingText;
      el.text.classList.add("is-placeholder");
      el.externalId.textContent = "";
      el.metadata.hidden = true;
    }
  }

  // --- status bar -----------------------------------------------------------------------------

  /* The status bar of the page's elements `el`: {set(message, options), report(error, what,
   * retry, extra)}. set(null) hides it; options: kind ("notice" or an error), retry (a function:
   * shows Retry), focusRetry, login (shows "Log in again"), dismissible. */
  function statusBar(el) {
    function focusText() {
      if (!el.workspace.hidden) el.text.focus({ preventScroll: true });
    }

    function set(message, options) {
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
            set(null);
            focusText(); // the Retry button is gone
            options.retry();
          }
        : null;
      el.login.hidden = !options.login;
      el.dismiss.hidden = !options.dismissible;
      if (options.retry && options.focusRetry) el.retry.focus();
    }

    function report(error, what, retry, extra) {
      extra = extra || {};
      if (error.network) {
        set("Could not " + what + ": no answer from the server. " + (extra.kept || "") + "Check your connection and retry.", {
          retry: retry,
          focusRetry: extra.focusRetry,
        });
      } else if (isAuthError(error)) {
        set("You are logged out, so Quorum could not " + what + ". " + (extra.kept || "") + "Log in again to go on.", {
          login: true,
        });
      } else if (error.status >= 500 || error.status === 429) {
        set("Could not " + what + ": the server had a problem (" + error.status + "). " + (extra.kept || ""), {
          retry: retry,
          focusRetry: extra.focusRetry,
        });
      } else {
        set("Could not " + what + ": " + (error.detail || "the server refused it (" + error.status + ")") + ".", {
          dismissible: true,
        });
      }
    }

    el.dismiss.addEventListener("click", function () {
      set(null);
      focusText();
    });
    return { set: set, report: report };
  }

  // --- polling --------------------------------------------------------------------------------

  /* Calls load() once after schedule(ms); on a hidden page, not until resume() is called once it
   * is visible again. */
  function poller(load) {
    var timer = null;
    var whenVisible = false;

    function stop() {
      if (timer !== null) window.clearTimeout(timer);
      timer = null;
      whenVisible = false;
    }

    function schedule(ms) {
      stop();
      timer = window.setTimeout(function () {
        timer = null;
        if (document.visibilityState !== "visible") {
          whenVisible = true;
          return;
        }
        load();
      }, ms);
    }

    function resume() {
      if (!whenVisible) return;
      whenVisible = false;
      load();
    }

    return { stop: stop, schedule: schedule, resume: resume };
  }

  // --- label filter ---------------------------------------------------------------------------

  function normalise(text) {
    return String(text).toLowerCase().replace(/[_\-\s]+/g, " ").trim();
  }

  /* The filter box over the label buttons (pages with many labels; `input` is null otherwise).
   * Typing narrows the buttons, ArrowDown moves to the first one shown; onKey(event) handles the
   * other keys pressed in the box. slashKey(event), for the page's own key handler: "/" goes to
   * the box (true when it did). */
  function labelFilter(input, buttons, noMatch, onKey) {
    function first() {
      return buttons.filter(function (button) {
        return !button.hidden;
      })[0];
    }

    function apply() {
      var query = normalise(input.value);
      var shown = 0;
      buttons.forEach(function (button) {
        var match = !query || normalise(button.dataset.label).indexOf(query) !== -1;
        button.hidden = !match;
        if (match) shown += 1;
      });
      noMatch.hidden = shown !== 0;
    }

    function clear() {
      if (!input) return;
      input.value = "";
      apply();
    }

    function slashKey(event) {
      if (event.key !== "/" || !input) return false;
      event.preventDefault();
      input.focus();
      input.select();
      return true;
    }

    if (input) {
      input.addEventListener("input", apply);
      input.addEventListener("keydown", function (event) {
        if (event.key === "ArrowDown") {
          var target = first();
          if (target) {
            event.preventDefault();
            target.focus();
          }
          return;
        }
        onKey(event);
      });
    }
    return { first: first, clear: clear, slashKey: slashKey };
  }

  // --- keys -----------------------------------------------------------------------------------

  /* Whether key presses on `target` are typing (so no shortcut applies). */
  function isTyping(target) {
    if (!target || !target.matches) return false;
    return target.matches(
      'input:not([type="checkbox"]):not([type="radio"]):not([type="button"]):not([type="submit"]), textarea, select, [contenteditable=""], [contenteditable="true"]'
    );
  }

  window.Quorum = {
    ApiError: ApiError,
    apiClient: apiClient,
    isAuthError: isAuthError,
    elements: elements,
    labelButtons: labelButtons,
    announcer: announcer,
    excerpt: excerpt,
    node: node,
    showItem: showItem,
    setView: setView,
    statusBar: statusBar,
    poller: poller,
    labelFilter: labelFilter,
    isTyping: isTyping,
  };
})();
