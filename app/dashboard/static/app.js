/* lossmon dashboard: plain JavaScript, no framework, no build step.
 *
 * Routes (hash based): "#/" lists the models, "#/models/{id}" shows one model.
 * Everything comes from the JSON API (see API.md) with fetch(); the API key, when the
 * server needs one, is entered once and kept in localStorage. Charts are inline SVG.
 * Data is only ever put into the page as text (textContent / attributes), never as HTML.
 */
"use strict";

(() => {
  const KEY_STORAGE = "lossmon.apiKey";
  const MIN = 60e3;
  const HOUR = 60 * MIN;
  const DAY = 24 * HOUR;
  const RANGES = [
    ["24h", 1],
    ["7d", 7],
    ["30d", 30],
    ["90d", 90],
  ];
  const OVERVIEW_DAYS = 30;
  const ALERT_DETAILS = 10; // recent alerts whose webhook deliveries are fetched
  const REFRESH_MS = 60e3;

  const app = document.getElementById("app");
  const state = {
    key: readKey(),
    rangeDays: 30,
    generation: 0,
    charts: [],
    showingKeyForm: false,
  };

  // ------------------------------------------------------------------ storage

  function readKey() {
    try {
      return localStorage.getItem(KEY_STORAGE) || "";
    } catch {
      return "";
    }
  }

  function writeKey(key) {
    state.key = key;
    try {
      if (key) localStorage.setItem(KEY_STORAGE, key);
      else localStorage.removeItem(KEY_STORAGE);
    } catch {
      /* storage disabled: the key lives for this page only */
    }
    updateKeyButton();
  }

  // ------------------------------------------------------------------ DOM helpers

  const SVG_NS = "http://www.w3.org/2000/svg";

  function append(el, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  /** h("td", {class: "num"}, "0.123"): an HTML element; attributes are set as attributes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    return append(el, children);
  }

  /** A card holding one data table: title, a hint on the right, column headers, rows. */
  function tableCard(testid, title, hint, headers, body) {
    return h(
      "section",
      { class: "card", "data-testid": testid },
      h("div", { class: "card-head" }, h("h2", {}, title), h("span", { class: "hint" }, hint)),
      h(
        "div",
        { class: "card-body flush" },
        h(
          "table",
          { class: "data" },
          h("thead", {}, h("tr", {}, ...headers.map((text) => h("th", {}, text)))),
          body,
        ),
      ),
    );
  }

  /** The same for SVG elements. */
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      el.setAttribute(name, String(value));
    }
    return append(el, children);
  }

  // ------------------------------------------------------------------ formatting

  const isNum = (x) => typeof x === "number" && Number.isFinite(x);
  const DASH = "—";

  function fmtNum(x, digits = 3) {
    return isNum(x) ? x.toFixed(digits) : DASH;
  }

  function fmtPct(x) {
    if (!isNum(x)) return DASH;
    const p = x * 100;
    const text = p.toFixed(1);
    return (text.endsWith(".0") ? text.slice(0, -2) : text) + "%";
  }

  function fmtSigned(x, digits = 2) {
    if (!isNum(x)) return DASH;
    const v = x.toFixed(digits);
    if (Number(v) === 0) return (0).toFixed(digits);
    return x > 0 ? "+" + v : "−" + v.slice(1);
  }

  // Every time is shown in UTC and says so: windows are aligned to UTC, and a team
  // spread over time zones must read the same hour.
  const DATE_FMT = new Intl.DateTimeFormat(undefined, {
    month: "short",
    day: "numeric",
    timeZone: "UTC",
  });
  const TIME_FMT = new Intl.DateTimeFormat(undefined, {
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    timeZone: "UTC",
  });
  const FULL_FMT = new Intl.DateTimeFormat(undefined, {
    timeZone: "UTC",
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
    timeZoneName: "short",
  });

  function fmtWhen(t) {
    if (t === null || t === undefined) return DASH;
    const d = new Date(t);
    return `${DATE_FMT.format(d)}, ${TIME_FMT.format(d)} UTC`;
  }

  function fmtFull(t) {
    return t === null || t === undefined ? "" : FULL_FMT.format(new Date(t));
  }

  function fmtSpan(startIso, endIso) {
    const a = new Date(startIso);
    const b = new Date(endIso);
    const sameDay = DATE_FMT.format(a) === DATE_FMT.format(new Date(b.getTime() - 1));
    return sameDay
      ? `${DATE_FMT.format(a)}, ${TIME_FMT.format(a)}–${TIME_FMT.format(b)} UTC`
      : `${fmtWhen(a)} – ${fmtWhen(b)}`;
  }

  function fmtDuration(ms) {
    if (!isNum(ms) || ms < 0) return DASH;
    const m = Math.round(ms / MIN);
    if (m < 1) return "< 1 min";
    if (m < 60) return `${m} min`;
    const hrs = Math.floor(m / 60);
    if (hrs < 48) return m % 60 ? `${hrs} h ${m % 60} min` : `${hrs} h`;
    return `${Math.round(hrs / 24)} d`;
  }

  function fmtAgo(t) {
    if (!t) return DASH;
    const ms = Date.now() - new Date(t).getTime();
    if (ms < MIN) return "just now";
    return `${fmtDuration(ms)} ago`;
  }

  /** RFC 3339 with an offset and whole seconds, as the API wants it. */
  function isoSeconds(ms) {
    return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
  }

  function skillClass(x) {
    if (!isNum(x)) return "";
    return x > 0 ? "good" : "bad";
  }

  function describeRule(rule) {
    if (!rule || typeof rule !== "object") return DASH;
    switch (rule.type) {
      case "log_loss_above":
        return `log loss > ${rule.threshold}`;
      case "skill_below":
        return `skill < ${rule.threshold}`;
      case "trend":
        return `log loss rising over ${rule.windows} windows (α = ${rule.alpha ?? 0.01})`;
      case "relative_to_reference":
        return (
          `log loss > ${fmtPct(1 + Number(rule.max_increase))} of reference ` +
          `(${fmtWhen(rule.reference_start)} – ${fmtWhen(rule.reference_end)}, ` +
          `α = ${rule.alpha ?? 0.01})`
        );
      case "calibration_gap_above":
        return `log loss − expected > ${rule.threshold}`;
      case "label_coverage_below":
        return `label coverage < ${fmtPct(Number(rule.threshold))} (after ${rule.grace_windows ?? 1} window(s))`;
      case "cusum":
        return (
          `CUSUM of log loss over reference ` +
          `(${fmtWhen(rule.reference_start)} – ${fmtWhen(rule.reference_end)}, ` +
          `k = ${rule.k ?? 0.75}, ` +
          (rule.h != null
            ? `h = ${rule.h})`
            : `false alarms ${fmtPct(Number(rule.false_alarm_rate ?? 0.01))} of windows)`)
        );
      default:
        return JSON.stringify(rule);
    }
  }

  // Multiclass: the three most frequent classes of the window's labels.
  function classMix(rates) {
    return Object.entries(rates)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([name, r]) => `${name} ${fmtPct(r)}`)
      .join(", ");
  }

  // The slice a monitor watches, if any ("" is the unversioned model_version).
  function describeSlice(m) {
    if (m.segment_key) return ` on each ${m.segment_key}`;
    if (m.segment) return ` on ${m.segment}`;
    if (m.model_version !== null && m.model_version !== undefined) {
      return ` on version ${m.model_version === "" ? "(none)" : m.model_version}`;
    }
    return "";
  }

  function webhookHost(url) {
    try {
      return new URL(url).host;
    } catch {
      return url;
    }
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, params) {
    const url = new URL(path, location.origin);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers = { Accept: "application/json" };
    if (state.key) headers.Authorization = `Bearer ${state.key}`;
    let response;
    try {
      response = await fetch(url, { headers, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, `cannot reach the server (${err.message})`);
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        if (typeof body.detail === "string") detail = body.detail;
        else if (Array.isArray(body.detail)) {
          detail = body.detail.map((d) => d.message || d.msg || JSON.stringify(d)).join("; ");
        }
      } catch {
        /* not JSON: keep the status text */
      }
      throw new ApiError(response.status, detail || `HTTP ${response.status}`);
    }
    return response.json();
  }

  /** Every page of a paginated list (GET /v1/models, .../metrics): follows next_cursor
   * and concatenates `field` of each page into the first page's body. */
  async function apiAll(path, params, field) {
    const first = await api(path, params);
    let page = first;
    while (page.next_cursor) {
      page = await api(path, { ...params, cursor: page.next_cursor });
      first[field] = first[field].concat(page[field]);
    }
    first.next_cursor = null;
    return first;
  }

  const isAuthError = (err) =>
    err instanceof ApiError && (err.status === 401 || err.status === 403);
  const modelPath = (id) => `/v1/models/${encodeURIComponent(id)}`;

  // min_labeled of a model without monitors: the monitors' default (as /metrics).
  const DEFAULT_MIN_LABELED = 200;

  /** How many labeled rows make a window "evaluated", as /metrics' lossmon_evaluated_*
   * gauges define it: the smallest min_labeled of the model's enabled monitors, else the
   * monitors' default. */
  function evaluationThreshold(monitors) {
    const enabled = (monitors || []).filter((m) => m.enabled !== false);
    return enabled.length ? Math.min(...enabled.map((m) => m.min_labeled)) : DEFAULT_MIN_LABELED;
  }

  /** The window the headline numbers describe: the newest evaluated one (labels arrive
   * late: the newest windows often hold a handful of early labels, not the window's
   * loss). With none evaluated in view, the newest labeled window, said so. */
  function latestEvaluated(windows, threshold) {
    for (let i = windows.length - 1; i >= 0; i--) {
      const w = windows[i];
      if (isNum(w.log_loss) && w.labeled >= threshold) return w;
    }
    return latestWindow(windows);
  }

  function evaluatedRule(threshold, w) {
    return w && w.labeled < threshold
      ? `none in view has ${threshold} labeled rows: not yet evaluated`
      : `≥ ${threshold} labeled`;
  }

  function latestWindow(windows) {
    for (let i = windows.length - 1; i >= 0; i--) {
      if (isNum(windows[i].log_loss)) return windows[i];
    }
    return windows.length ? windows[windows.length - 1] : null;
  }

  // ------------------------------------------------------------------ routing / rendering

  function currentRoute() {
    const match = location.hash.match(/^#\/models\/([^/?#]+)/);
    if (match) {
      try {
        return { view: "model", id: decodeURIComponent(match[1]) };
      } catch {
        return { view: "overview" };
      }
    }
    return { view: "overview" };
  }

  async function render({ quiet = false } = {}) {
    const generation = ++state.generation;
    const route = currentRoute();
    state.showingKeyForm = false;
    for (const a of document.querySelectorAll("[data-nav]")) {
      a.classList.toggle("active", a.dataset.nav === "models");
    }
    if (!quiet) {
      app.dataset.state = "loading";
      app.replaceChildren(loadingView());
    }
    try {
      const view = route.view === "model" ? await modelView(route.id) : await overviewView();
      if (generation !== state.generation) return; // a newer render started meanwhile
      state.charts = [];
      app.replaceChildren(view.node);
      if (view.mount) view.mount();
      app.dataset.view = route.view;
      app.dataset.state = "ready";
      document.getElementById("refreshed").textContent = `Updated ${TIME_FMT.format(new Date())} UTC`;
    } catch (err) {
      if (generation !== state.generation) return;
      if (isAuthError(err)) {
        showKeyForm(err);
        return;
      }
      app.dataset.state = "error";
      app.replaceChildren(errorView(err));
    }
  }

  function loadingView() {
    const card = h("div", { class: "card" });
    const body = h("div", { class: "card-body" });
    for (let i = 0; i < 5; i++) body.append(h("div", { class: "skeleton", "aria-hidden": "true" }));
    card.append(body);
    return h("div", { "aria-busy": "true" }, card);
  }

  function errorView(err) {
    const notFound = err instanceof ApiError && err.status === 404;
    return h(
      "div",
      { class: notFound ? "notice" : "notice error", "data-testid": "error" },
      h("h2", {}, notFound ? "Not found" : "Could not load the data"),
      h("p", {}, err.message || String(err)),
      h(
        "p",
        {},
        notFound
          ? h("a", { href: "#/" }, "Back to the models")
          : h("button", { type: "button", class: "btn", onclick: () => render() }, "Try again"),
      ),
    );
  }

  // ------------------------------------------------------------------ API key form

  function updateKeyButton() {
    const button = document.getElementById("key-button");
    if (button) button.textContent = state.key ? "API key ✓" : "API key";
  }

  function showKeyForm(err) {
    state.generation++; // anything still loading must not replace the form
    state.showingKeyForm = true;
    app.dataset.state = "auth";
    let reason = "Enter an API key to read this server's models and alerts.";
    if (err && err.status === 401) {
      reason = state.key
        ? "The server did not accept the stored key. Enter another one."
        : "This lossmon server requires an API key.";
    } else if (err && err.status === 403) {
      reason = "This key is not allowed to read (it lacks the read scope). Enter another one.";
    }
    const input = h("input", {
      type: "password",
      id: "api-key",
      name: "api-key",
      autocomplete: "off",
      spellcheck: "false",
      required: true,
      placeholder: "lm_…",
      "data-testid": "api-key-input",
    });
    const form = h(
      "form",
      {
        class: "card auth",
        "data-testid": "key-form",
        onsubmit: (event) => {
          event.preventDefault();
          const key = input.value.trim();
          if (!key) return;
          writeKey(key);
          render();
        },
      },
      h("h1", {}, "API key"),
      h("p", {}, reason),
      err && err.message && state.key ? h("div", { class: "error-text" }, err.message) : null,
      h("label", { for: "api-key" }, "Key"),
      input,
      h(
        "p",
        { class: "help" },
        "Create one with ",
        h("code", {}, "lossmon keys create --scope read"),
        ". It is kept in this browser only and sent as an Authorization: Bearer header.",
      ),
      h(
        "div",
        { class: "row" },
        h(
          "button",
          { type: "submit", class: "btn btn-primary", "data-testid": "api-key-save" },
          "Save key",
        ),
        err
          ? null
          : h("button", { type: "button", class: "btn", onclick: () => render() }, "Cancel"),
        state.key
          ? h(
              "button",
              {
                type: "button",
                class: "btn-link",
                onclick: () => {
                  writeKey("");
                  render();
                },
              },
              "Forget the stored key",
            )
          : null,
      ),
    );
    app.replaceChildren(form);
    input.focus();
  }

  // ------------------------------------------------------------------ overview

  async function overviewView() {
    const { models } = await apiAll("/v1/models", {}, "models");
    const start = isoSeconds(Date.now() - OVERVIEW_DAYS * DAY);
    const rows = await Promise.all(
      models.map(async (model) => {
        try {
          const [history, firing, monitors] = await Promise.all([
            apiAll(`${modelPath(model.model_id)}/metrics`, { start }, "windows"),
            api("/v1/alerts", { model_id: model.model_id, state: "firing" }),
            api(`${modelPath(model.model_id)}/monitors`),
          ]);
          return {
            model,
            windows: history.windows,
            firing: firing.alerts,
            threshold: evaluationThreshold(monitors.monitors),
            error: null,
          };
        } catch (err) {
          if (isAuthError(err)) throw err;
          return { model, windows: [], firing: [], threshold: null, error: err };
        }
      }),
    );
    document.title = "Models · lossmon";

    const head = h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("h1", {}, "Models"),
        h(
          "div",
          { class: "sub" },
          `Latest evaluated window of each model against the naive baseline · last ${OVERVIEW_DAYS} days · times in UTC`,
        ),
      ),
    );
    if (!models.length) {
      const origin = location.origin;
      return {
        node: h(
          "div",
          { class: "stack" },
          head,
          h(
            "div",
            { class: "notice", "data-testid": "no-models" },
            h("h2", {}, "No models yet"),
            h("p", {}, "Register one, then send predictions and actuals:"),
            h(
              "pre",
              {},
              `curl -X PUT ${origin}/v1/models/ctr \\\n` +
                `  -H 'Content-Type: application/json' -d '{"window": "1h"}'`,
            ),
          ),
        ),
      };
    }

    const body = h("tbody");
    for (const row of rows) body.append(overviewRow(row));
    const table = h(
      "table",
      { class: "data", "data-testid": "models-table" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", {}, "Model"),
          h("th", {}, "Latest evaluated window (UTC)"),
          h("th", { class: "num" }, "Log loss"),
          h("th", { class: "num" }, "Baseline"),
          h(
            "th",
            { class: "num", title: "1 − log loss / baseline: > 0 beats the naive model" },
            "Skill",
          ),
          h("th", {}, "Label coverage"),
          h("th", {}, `Log loss, ${OVERVIEW_DAYS} d`),
          h("th", { class: "num" }, "Firing"),
        ),
      ),
      body,
    );
    return {
      node: h(
        "div",
        { class: "stack" },
        head,
        h("div", { class: "card" }, h("div", { class: "card-body flush" }, table)),
      ),
    };
  }

  function overviewRow({ model, windows, firing, threshold, error }) {
    const href = `#/models/${encodeURIComponent(model.model_id)}`;
    const w = latestEvaluated(windows, threshold);
    const newest = windows.length ? windows[windows.length - 1] : null;
    const nameCell = h(
      "td",
      {},
      h("a", { href, class: "model-name" }, model.model_id),
      h(
        "div",
        { class: "model-desc" },
        model.description || `${model.task} · ${model.window} windows`,
      ),
    );
    const tr = h("tr", {
      class: "link",
      "data-testid": "model-row",
      "data-model-id": model.model_id,
      onclick: (event) => {
        if (!event.target.closest("a")) location.hash = href;
      },
    });
    if (error) {
      tr.append(nameCell, h("td", { colspan: 7, class: "muted" }, `unavailable: ${error.message}`));
      return tr;
    }
    const firingCount = firing.length;
    tr.append(
      nameCell,
      h(
        "td",
        { title: w ? `${fmtFull(w.start)} (${evaluatedRule(threshold, w)})` : "" },
        w ? fmtWhen(w.start) : h("span", { class: "faint" }, "no data yet"),
      ),
      h("td", { class: "num", "data-testid": "log-loss" }, fmtNum(w && w.log_loss)),
      h("td", { class: "num muted" }, fmtNum(w && w.baseline_log_loss)),
      h(
        "td",
        { class: "num" },
        h(
          "span",
          { class: `pill ${skillClass(w && w.skill)}`, "data-testid": "skill" },
          fmtSigned(w && w.skill),
        ),
      ),
      h("td", {}, coverageBar(w && w.label_coverage, w), newestCoverage(newest, w)),
      h("td", {}, sparkline(windows)),
      h(
        "td",
        { class: "num" },
        h(
          "span",
          {
            class: firingCount ? "badge alerting" : "badge",
            "data-testid": "firing-count",
            title: firingCount
              ? firing.map((a) => a.monitor?.name || a.monitor_id).join(", ")
              : "no firing alert",
          },
          String(firingCount),
        ),
      ),
    );
    return tr;
  }

  /** The newest window's label coverage, when it is not the window shown. */
  function newestCoverage(newest, shown) {
    if (!newest || newest === shown) return null;
    return h(
      "div",
      {
        class: "faint newest-coverage",
        "data-testid": "newest-coverage",
        title: `${newest.labeled} of ${newest.predictions} predictions labeled so far`,
      },
      `newest (${TIME_FMT.format(new Date(newest.start))} UTC): ${fmtPct(newest.label_coverage)} labeled`,
    );
  }

  function coverageBar(coverage, w) {
    if (!isNum(coverage)) return h("span", { class: "faint" }, DASH);
    const fill = h("div", { class: "bar-fill" });
    fill.style.width = `${Math.max(0, Math.min(1, coverage)) * 100}%`;
    return h(
      "span",
      { class: "bar", title: w ? `${w.labeled} of ${w.predictions} predictions labeled` : "" },
      h("span", { class: "bar-track" }, fill),
      fmtPct(coverage),
    );
  }

  function sparkline(windows) {
    const width = 132;
    const height = 30;
    const pts = windows.filter((w) => isNum(w.log_loss));
    if (pts.length < 2) return h("span", { class: "faint" }, DASH);
    const t0 = Date.parse(pts[0].start);
    const t1 = Date.parse(pts[pts.length - 1].start);
    let hi = 0;
    for (const w of pts)
      hi = Math.max(hi, w.log_loss, isNum(w.baseline_log_loss) ? w.baseline_log_loss : 0);
    hi = hi || 1;
    const x = (t) => 1 + ((t - t0) / (t1 - t0 || 1)) * (width - 2);
    const y = (v) => height - 2 - (v / hi) * (height - 4);
    const path = (key) =>
      pts
        .filter((w) => isNum(w[key]))
        .map(
          (w, i) => `${i ? "L" : "M"}${x(Date.parse(w.start)).toFixed(1)},${y(w[key]).toFixed(1)}`,
        )
        .join("");
    return s(
      "svg",
      {
        class: "spark",
        width,
        height,
        viewBox: `0 0 ${width} ${height}`,
        role: "img",
        "aria-label": "log loss and baseline over time",
      },
      s("path", { class: "base", d: path("baseline_log_loss") }),
      s("path", { class: "loss", d: path("log_loss") }),
    );
  }

  // ------------------------------------------------------------------ model page

  async function modelView(id) {
    const start = isoSeconds(Date.now() - state.rangeDays * DAY);
    const [model, history, monitorList, alertList, firingList, storage] = await Promise.all([
      api(modelPath(id)),
      apiAll(`${modelPath(id)}/metrics`, { start }, "windows"),
      api(`${modelPath(id)}/monitors`),
      api("/v1/alerts", { model_id: id, limit: 200 }),
      api("/v1/alerts", { model_id: id, state: "firing" }),
      // Raw rows kept (retention); a server without the endpoint just shows a dash.
      api(`${modelPath(id)}/storage`).catch((err) => {
        if (isAuthError(err)) throw err;
        return null;
      }),
    ]);
    const alerts = alertList.alerts;
    const details = await Promise.all(
      alerts.slice(0, ALERT_DETAILS).map((a) =>
        api(`/v1/alerts/${encodeURIComponent(a.alert_id)}`).catch((err) => {
          if (isAuthError(err)) throw err;
          return { ...a, deliveries: null };
        }),
      ),
    );
    document.title = `${model.model_id} · lossmon`;
    const windows = history.windows;
    const windowMs = (model.window_seconds || 3600) * 1000;
    const episodes = alertEpisodes(alerts, windowMs);
    const threshold = evaluationThreshold(monitorList.monitors);
    const latest = latestEvaluated(windows, threshold);
    const newest = windows.length ? windows[windows.length - 1] : null;

    const latestNote = latest
      ? `latest evaluated window ${fmtSpan(latest.start, latest.end)} (${evaluatedRule(threshold, latest)})`
      : "no windows in this range";
    const rangeButtons = h("div", {
      class: "segmented",
      role: "group",
      "aria-label": "Time range",
    });
    for (const [label, days] of RANGES) {
      rangeButtons.append(
        h(
          "button",
          {
            type: "button",
            "aria-pressed": String(days === state.rangeDays),
            onclick: () => {
              state.rangeDays = days;
              render();
            },
          },
          label,
        ),
      );
    }

    const head = h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("div", { class: "crumbs" }, h("a", { href: "#/" }, "← All models")),
        h(
          "h1",
          { "data-testid": "model-title" },
          model.model_id,
          h(
            "span",
            { class: "chips" },
            h("span", { class: "chip" }, model.task),
            h("span", { class: "chip" }, `${model.window} windows`),
          ),
        ),
        h(
          "div",
          { class: "sub", "data-testid": "latest-note" },
          [model.description, latestNote].filter(Boolean).join(" · "),
        ),
      ),
      rangeButtons,
    );

    const kpis = h(
      "div",
      { class: "kpis" },
      kpi(
        "Log loss",
        fmtNum(latest && latest.log_loss),
        "",
        latest && isNum(latest.log_loss_stderr)
          ? `± ${fmtNum(latest.log_loss_stderr)} stderr`
          : latestFoot(latest),
      ),
      kpi(
        "Baseline log loss",
        fmtNum(latest && latest.baseline_log_loss),
        "",
        latest && isNum(latest.positive_rate)
          ? `base rate ${fmtPct(latest.positive_rate)}`
          : latest && latest.class_rates
            ? classMix(latest.class_rates)
            : "naive model",
      ),
      kpi(
        "Skill",
        fmtSigned(latest && latest.skill),
        skillClass(latest && latest.skill),
        "> 0 beats the baseline",
      ),
      kpi(
        "Label coverage",
        fmtPct(latest && latest.label_coverage),
        "",
        latest ? `${latest.labeled} of ${latest.predictions} labeled` : DASH,
        newest && newest !== latest
          ? h(
              "span",
              { "data-testid": "newest-coverage" },
              `newest window ${fmtSpan(newest.start, newest.end)}: `,
              h("b", {}, fmtPct(newest.label_coverage)),
              " labeled so far",
            )
          : null,
      ),
      kpi("Expected log loss", fmtNum(latest && latest.expected_log_loss), "", "if calibrated"),
      kpi(
        "Firing alerts",
        String(firingList.alerts.length),
        firingList.alerts.length ? "bad" : "",
        `${monitorList.monitors.length} monitor${monitorList.monitors.length === 1 ? "" : "s"}`,
      ),
      rowsKeptKpi(storage),
    );

    const lossHolder = h("div", { class: "chart", "data-testid": "logloss-chart-holder" });
    const coverageHolder = h("div", { class: "chart", "data-testid": "coverage-chart-holder" });
    const lossCard = h(
      "section",
      { class: "card" },
      h(
        "div",
        { class: "card-head" },
        h("h2", {}, "Log loss vs. naive baseline"),
        h(
          "div",
          { class: "legend" },
          h("span", {}, h("i", { class: "loss" }), "log loss"),
          h("span", {}, h("i", { class: "band" }), "± stderr"),
          h("span", {}, h("i", { class: "baseline" }), "baseline"),
          h("span", {}, h("i", { class: "expected" }), "expected"),
          h("span", {}, h("i", { class: "alert" }), "alert firing"),
        ),
      ),
      h("div", { class: "card-body" }, windows.length ? lossHolder : emptyChart()),
    );
    const coverageCard = h(
      "section",
      { class: "card" },
      h(
        "div",
        { class: "card-head" },
        h("h2", {}, "Label coverage"),
        h("span", { class: "hint" }, "share of predictions with an actual"),
      ),
      h("div", { class: "card-body" }, windows.length ? coverageHolder : emptyChart()),
    );

    const node = h(
      "div",
      { class: "stack", "data-testid": "model-page", "data-model-id": model.model_id },
      head,
      kpis,
      lossCard,
      coverageCard,
      monitorsCard(monitorList.monitors),
      alertsCard(alerts, details),
    );

    return {
      node,
      mount() {
        if (!windows.length) return;
        const bus = hoverBus();
        const ctx = { windows, windowMs, episodes, bus };
        state.charts.push(lossChart(lossHolder, ctx), coverageChart(coverageHolder, ctx));
      },
    };
  }

  function rowsKeptKpi(storage) {
    const kept = storage ? storage.predictions_kept.toLocaleString("en-US") : DASH;
    const foot = !storage
      ? DASH
      : `${storage.actuals_kept.toLocaleString("en-US")} actuals; ` +
        (storage.retention_days ? `retention ${storage.retention_days} d` : "kept forever");
    const card = kpi("Rows kept", kept, "", foot);
    card.dataset.testid = "rows-kept";
    return card;
  }

  function latestFoot(latest) {
    return latest ? fmtWhen(latest.start) : DASH;
  }

  function kpi(label, value, cls, foot, aside) {
    return h(
      "div",
      { class: "card kpi" },
      h("div", { class: "label" }, label),
      h("div", { class: `value ${cls || ""}` }, value),
      h("div", { class: "foot" }, foot),
      aside ? h("div", { class: "foot aside" }, aside) : null,
    );
  }

  function emptyChart() {
    return h(
      "div",
      { class: "notice", "data-testid": "no-windows" },
      "No metric windows in this range.",
    );
  }

  /** One shaded region per alert, in window time: from the start of the window that
   * tripped it to the start of the window that resolved it (or the right edge while it
   * is still firing). started_at/resolved_at are wall-clock times of the evaluation,
   * used only when an alert carries no window. */
  function alertEpisodes(alerts, windowMs) {
    return alerts.map((a) => {
      const from = Date.parse((a.window && a.window.start) || a.started_at);
      let to = null;
      if (a.state !== "firing") {
        to = Date.parse((a.resolved_window && a.resolved_window.start) || a.resolved_at);
        if (!isNum(to) || to <= from) to = from + windowMs;
      }
      return { alert: a, from, to };
    });
  }

  function monitorsCard(monitors) {
    const body = h("tbody");
    if (!monitors.length) {
      body.append(
        h("tr", {}, h("td", { colspan: 6, class: "empty-cell" }, "No monitors on this model.")),
      );
    }
    for (const m of monitors) {
      let webhook = h("span", { class: "faint" }, "none");
      if (m.webhook_url) {
        webhook = m.webhook_disabled_at
          ? h(
              "span",
              {
                class: "pill warn",
                title: `disabled ${fmtFull(m.webhook_disabled_at)}: the receiver answered 410 Gone`,
              },
              "disabled",
            )
          : h(
              "span",
              { class: "mono", title: m.webhook_url },
              (m.webhook_format && m.webhook_format !== "standard" ? `${m.webhook_format}: ` : "") +
                webhookHost(m.webhook_url),
            );
      }
      const stateLabel = m.enabled ? m.state.replace("_", " ") : "disabled";
      body.append(
        h(
          "tr",
          { "data-testid": "monitor-row" },
          h("td", {}, h("span", { class: "model-name" }, m.name)),
          h("td", {}, describeRule(m.rule) + describeSlice(m)),
          h(
            "td",
            { class: "muted" },
            `≥ ${m.min_labeled} labeled, ${m.for_windows} window${m.for_windows === 1 ? "" : "s"} in a row`,
          ),
          h("td", {}, h("span", { class: `state ${m.enabled ? m.state : ""}` }, stateLabel)),
          h("td", {}, webhook),
          h(
            "td",
            { class: "muted", title: fmtFull(m.evaluated_at) },
            m.evaluated_at ? fmtAgo(m.evaluated_at) : "not yet",
          ),
        ),
      );
    }
    return tableCard("monitors", "Monitors", `${monitors.length} total`, [
      "Name",
      "Rule",
      "Evaluated when",
      "State",
      "Webhook",
      "Last evaluated",
    ], body);
  }

  function alertsCard(alerts, details) {
    const body = h("tbody");
    if (!alerts.length) {
      body.append(h("tr", {}, h("td", { colspan: 6, class: "empty-cell" }, "No alerts so far.")));
    }
    details.forEach((a) => {
      const started = Date.parse(a.started_at);
      const ended = a.resolved_at ? Date.parse(a.resolved_at) : Date.now();
      const tripped = a.window && a.window.start;
      body.append(
        h(
          "tr",
          { "data-testid": "alert-row", "data-alert-id": a.alert_id, "data-state": a.state },
          h(
            "td",
            {},
            h("span", { class: "model-name" }, (a.monitor && a.monitor.name) || a.monitor_id),
          ),
          h("td", {}, h("span", { class: `state ${a.state}` }, a.state)),
          h(
            "td",
            {},
            tripped ? fmtWhen(tripped) : DASH,
            a.window && isNum(a.window.log_loss)
              ? h(
                  "div",
                  { class: "model-desc" },
                  `log loss ${fmtNum(a.window.log_loss)}, skill ${fmtSigned(a.window.skill)}`,
                )
              : null,
          ),
          h("td", { title: fmtFull(a.started_at) }, fmtWhen(a.started_at)),
          h(
            "td",
            { title: a.resolved_at ? `resolved ${fmtFull(a.resolved_at)}` : "still firing" },
            a.resolved_at
              ? fmtDuration(ended - started)
              : h("span", { class: "state firing" }, `firing for ${fmtDuration(ended - started)}`),
          ),
          h("td", {}, deliveriesList(a.deliveries)),
        ),
      );
    });
    const more =
      alerts.length > details.length
        ? `${details.length} most recent of ${alerts.length}`
        : `${alerts.length} total`;
    return tableCard("alerts", "Recent alerts", more, [
      "Monitor",
      "State",
      "Tripped by window",
      "Started",
      "Duration",
      "Webhook deliveries",
    ], body);
  }

  function deliveriesList(deliveries) {
    if (deliveries === null || deliveries === undefined)
      return h("span", { class: "faint" }, "unavailable");
    if (!deliveries.length) return h("span", { class: "faint" }, "no webhook");
    const list = h("div", { class: "deliveries" });
    for (const d of deliveries) {
      const meta = [`${d.attempts} attempt${d.attempts === 1 ? "" : "s"}`];
      if (d.last_status_code) meta.push(`HTTP ${d.last_status_code}`);
      if (d.status === "pending" && d.next_attempt_at)
        meta.push(`next ${TIME_FMT.format(new Date(d.next_attempt_at))}`);
      list.append(
        h(
          "div",
          {
            class: "delivery",
            "data-testid": "delivery",
            "data-status": d.status,
            title: d.last_error
              ? `last error: ${d.last_error}`
              : fmtFull(d.delivered_at || d.last_attempt_at),
          },
          h(
            "span",
            { class: `state ${d.status}` },
            `${d.event_type.replace("alert.", "")} · ${d.status}`,
          ),
          h("span", { class: "meta" }, ` · ${meta.join(" · ")}`),
        ),
      );
    }
    return list;
  }

  // ------------------------------------------------------------------ charts

  const MARGIN = { top: 14, right: 14, bottom: 42, left: 60 };
  const TIME_STEPS = [
    5 * MIN,
    15 * MIN,
    30 * MIN,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
    14 * DAY,
    30 * DAY,
  ];

  function hoverBus() {
    const listeners = [];
    return {
      on(fn) {
        listeners.push(fn);
      },
      set(index, source) {
        for (const fn of listeners) fn(index, source);
      },
    };
  }

  function niceTicks(lo, hi, count) {
    const span = hi - lo || 1;
    const raw = span / count;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const norm = raw / mag;
    const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
    const first = Math.floor(lo / step + 1e-9) * step;
    const last = Math.ceil(hi / step - 1e-9) * step;
    const ticks = [];
    for (let v = first; v <= last + step / 2; v += step) ticks.push(Number(v.toFixed(10)));
    const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return { ticks, lo: first, hi: last, decimals };
  }

  function timeTicks(t0, t1, maxTicks) {
    const step =
      TIME_STEPS.find((st) => (t1 - t0) / st <= maxTicks) || TIME_STEPS[TIME_STEPS.length - 1];
    const ticks = []; // aligned to UTC midnight / hours, like the windows
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
    return { ticks, step };
  }

  function timeLabel(t, step) {
    const d = new Date(t);
    const midnight = d.getUTCHours() === 0 && d.getUTCMinutes() === 0;
    if (step >= DAY || midnight) return { text: DATE_FMT.format(d), day: step < DAY };
    return { text: TIME_FMT.format(d), day: false };
  }

  /** Axes, grid and scales for one chart in `holder`; returns what the series need. */
  function frame(holder, { height, t0, t1, yLo, yHi, yFormat, yTickCount, yTitle }) {
    const width = Math.max(320, holder.clientWidth || 800);
    const plotW = width - MARGIN.left - MARGIN.right;
    const plotH = height - MARGIN.top - MARGIN.bottom;
    const x = (t) => MARGIN.left + ((t - t0) / (t1 - t0 || 1)) * plotW;
    const y = (v) => MARGIN.top + plotH - ((v - yLo) / (yHi - yLo || 1)) * plotH;
    const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    const grid = s("g", { class: "grid" });
    const axis = s("g", { class: "axis" });
    for (const v of niceTicks(yLo, yHi, yTickCount).ticks) {
      if (v < yLo - 1e-12 || v > yHi + 1e-12) continue;
      grid.append(s("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v) }));
      axis.append(
        s("text", { x: MARGIN.left - 8, y: y(v) + 3.5, "text-anchor": "end" }, yFormat(v)),
      );
    }
    const { ticks, step } = timeTicks(t0, t1, Math.max(2, Math.floor(plotW / 86)));
    for (const t of ticks) {
      const label = timeLabel(t, step);
      axis.append(
        s(
          "text",
          { x: x(t), y: height - 24, "text-anchor": "middle", class: label.day ? "day" : null },
          label.text,
        ),
      );
    }
    // Axis titles with units: what is plotted, and in which time zone.
    axis.append(
      s(
        "text",
        {
          class: "axis-title",
          "data-testid": "x-axis-title",
          x: MARGIN.left + plotW / 2,
          y: height - 5,
          "text-anchor": "middle",
        },
        "window (UTC)",
      ),
      s(
        "text",
        {
          class: "axis-title",
          "data-testid": "y-axis-title",
          transform: `translate(13 ${MARGIN.top + plotH / 2}) rotate(-90)`,
          "text-anchor": "middle",
        },
        yTitle,
      ),
    );
    axis.append(
      s("line", {
        class: "baseline-axis",
        x1: MARGIN.left,
        x2: width - MARGIN.right,
        y1: y(yLo),
        y2: y(yLo),
      }),
    );
    svg.append(grid, axis);
    return { svg, x, y, width, height, plotW, plotH };
  }

  /** Index runs of consecutive windows (no gap in time) where value(w) is a number. */
  function runs(windows, value) {
    const out = [];
    let cur = [];
    windows.forEach((w, i) => {
      const ok = isNum(value(w));
      const adjacent = i > 0 && Date.parse(windows[i - 1].end) === Date.parse(w.start);
      if (!ok || (cur.length && !adjacent)) {
        if (cur.length) out.push(cur);
        cur = [];
      }
      if (ok) cur.push(i);
    });
    if (cur.length) out.push(cur);
    return out;
  }

  function linePath(idx, px, py) {
    return idx.map((i, k) => `${k ? "L" : "M"}${px(i).toFixed(1)},${py(i).toFixed(1)}`).join("");
  }

  /** A series line over a run of windows. A run of one window (a single window, or one
   * between gaps) has no neighbour to join: it is drawn as a level segment across the
   * window's own span instead of a zero-length path nothing would show. */
  function seriesPath(windows, run, x, px, py) {
    if (run.length > 1) return linePath(run, px, py);
    const [x0, x1] = runEdges(windows, run, x, px);
    const y = py(run[0]).toFixed(1);
    return `M${x0.toFixed(1)},${y}L${x1.toFixed(1)},${y}`;
  }

  /** Left and right x of a run as seriesPath draws it. */
  function runEdges(windows, run, x, px) {
    if (run.length > 1) return [px(run[0]), px(run[run.length - 1])];
    const w = windows[run[0]];
    return [x(Date.parse(w.start)), x(Date.parse(w.end))];
  }

  function nearestIndex(mids, t) {
    let lo = 0;
    let hi = mids.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (mids[mid] < t) lo = mid;
      else hi = mid;
    }
    return Math.abs(mids[lo] - t) <= Math.abs(mids[hi] - t) ? lo : hi;
  }

  /** Draws with `paint` now and again whenever the holder is resized. */
  function chart(holder, ctx, paint) {
    const mids = ctx.windows.map((w) => (Date.parse(w.start) + Date.parse(w.end)) / 2);
    const tooltip = h("div", { class: "tooltip", hidden: true });
    let current = null;
    let drawnWidth = -1;
    const draw = () => {
      if (holder.clientWidth === drawnWidth) return; // e.g. only the height changed
      drawnWidth = holder.clientWidth;
      const t0 = Date.parse(ctx.windows[0].start);
      const t1 = Date.parse(ctx.windows[ctx.windows.length - 1].end);
      current = paint({ t0, t1, mids });
      const overlay = s("rect", {
        class: "overlay",
        x: MARGIN.left,
        y: MARGIN.top,
        width: current.frame.plotW,
        height: current.frame.plotH,
      });
      overlay.addEventListener("pointermove", (event) => {
        const box = current.frame.svg.getBoundingClientRect();
        const px = event.clientX - box.left;
        const t = t0 + ((px - MARGIN.left) / current.frame.plotW) * (t1 - t0);
        ctx.bus.set(nearestIndex(mids, t), holder);
      });
      overlay.addEventListener("pointerleave", () => ctx.bus.set(null, holder));
      current.frame.svg.append(current.hoverLayer, overlay);
      holder.replaceChildren(current.frame.svg, tooltip);
    };
    ctx.bus.on((index, source) => {
      if (!current) return;
      current.hoverLayer.replaceChildren();
      if (index === null) {
        tooltip.hidden = true;
        return;
      }
      const px = current.frame.x(mids[index]);
      current.hoverLayer.append(
        s("line", {
          class: "guide",
          x1: px,
          x2: px,
          y1: MARGIN.top,
          y2: MARGIN.top + current.frame.plotH,
        }),
      );
      for (const dot of current.dots(index)) current.hoverLayer.append(dot);
      if (source !== holder) {
        tooltip.hidden = true;
        return;
      }
      tooltip.replaceChildren(...tooltipContent(ctx, index));
      tooltip.hidden = false;
      const tipW = tooltip.offsetWidth;
      const left = px + 14 + tipW > current.frame.width ? px - 14 - tipW : px + 14;
      tooltip.style.left = `${Math.max(0, left)}px`;
      tooltip.style.top = `${MARGIN.top}px`;
    });
    draw();
    return { draw };
  }

  function tooltipContent(ctx, i) {
    const w = ctx.windows[i];
    const row = (color, label, value) =>
      h(
        "div",
        { class: "t-row" },
        h("span", {}, tdot(color || "transparent"), label),
        h("span", {}, value),
      );
    const firing = ctx.episodes.filter((e) => {
      const t = Date.parse(w.start);
      return t >= e.from && (e.to === null || t < e.to);
    });
    return [
      h("div", { class: "t-head" }, fmtSpan(w.start, w.end)),
      row(
        "#2563eb",
        "Log loss",
        isNum(w.log_loss_stderr)
          ? `${fmtNum(w.log_loss)} ± ${fmtNum(w.log_loss_stderr)}`
          : fmtNum(w.log_loss),
      ),
      row("#6b7280", "Baseline", fmtNum(w.baseline_log_loss)),
      row(null, "Skill", fmtSigned(w.skill)),
      row("#7c3aed", "Expected", fmtNum(w.expected_log_loss)),
      row("#0d9488", "Labeled", `${w.labeled} / ${w.predictions} (${fmtPct(w.label_coverage)})`),
      firing.length
        ? row(
            "#ef4444",
            "Alert",
            firing
              .map((e) => (e.alert.monitor && e.alert.monitor.name) || e.alert.monitor_id)
              .join(", "),
          )
        : null,
    ].filter(Boolean);
  }

  function tdot(color) {
    const dot = h("span", { class: "t-dot" });
    dot.style.background = color;
    return dot;
  }

  function episodeTitle(alert, name) {
    if (alert.state === "firing") return `${name}: firing since ${fmtFull(alert.started_at)}`;
    const resolved = alert.resolved_at ? `, resolved ${fmtFull(alert.resolved_at)}` : "";
    return `${name}: fired ${fmtFull(alert.started_at)}${resolved}`;
  }

  function lossChart(holder, ctx) {
    const { windows, episodes } = ctx;
    return chart(holder, ctx, ({ t0, t1, mids }) => {
      let hi = 0;
      for (const w of windows) {
        for (const v of [
          isNum(w.log_loss)
            ? w.log_loss + (isNum(w.log_loss_stderr) ? w.log_loss_stderr : 0)
            : null,
          w.baseline_log_loss,
          w.expected_log_loss,
        ]) {
          if (isNum(v)) hi = Math.max(hi, v);
        }
      }
      const yt = niceTicks(0, (hi || 1) * 1.12, 4); // headroom for the alert labels
      const f = frame(holder, {
        height: 270,
        t0,
        t1,
        yLo: 0,
        yHi: yt.hi,
        yTickCount: 4,
        yFormat: (v) => v.toFixed(yt.decimals),
        yTitle: "log loss (nats)",
      });
      const { svg, x, y } = f;
      const plotted = windows.filter((w) => isNum(w.log_loss)).length;
      svg.setAttribute("data-testid", "logloss-chart");
      svg.setAttribute("data-points", String(plotted));
      svg.setAttribute("data-windows", String(windows.length));
      svg.setAttribute("aria-label", `log loss of ${plotted} windows against the baseline`);

      // Alert episodes first, so the series are drawn over them.
      const epLayer = s("g", { class: "episodes" });
      const labelLayer = s("g", { class: "episode-labels" }); // drawn over the series
      for (const e of episodes) {
        const from = Math.max(e.from, t0);
        const to = Math.min(e.to === null ? t1 : e.to, t1);
        if (!(to > from)) continue;
        const x0 = x(from);
        const x1 = x(to);
        const name = (e.alert.monitor && e.alert.monitor.name) || e.alert.monitor_id;
        const g = s(
          "g",
          {
            "data-testid": "alert-episode",
            "data-alert-id": e.alert.alert_id,
            "data-state": e.alert.state,
          },
          s("title", {}, episodeTitle(e.alert, name)),
          s("rect", { class: "episode", x: x0, y: MARGIN.top, width: x1 - x0, height: f.plotH }),
          s("rect", { class: "episode-edge", x: x0, y: MARGIN.top, width: x1 - x0, height: 3 }),
        );
        // The monitor's name inside the region when it fits; a firing episode always
        // gets it, right-aligned at its end (the right edge of the plot).
        const label = e.alert.state === "firing" ? `${name} · firing` : name;
        const labelW = label.length * 6.4 + 12;
        if (x1 - x0 >= labelW) {
          labelLayer.append(
            s("text", { class: "episode-label", x: x0 + 6, y: MARGIN.top + 16 }, label),
          );
        } else if (e.alert.state === "firing") {
          labelLayer.append(
            s(
              "text",
              { class: "episode-label", x: x1 - 6, y: MARGIN.top + 16, "text-anchor": "end" },
              label,
            ),
          );
        }
        epLayer.append(g);
      }
      svg.append(epLayer);

      const px = (i) => x(mids[i]);
      const series = s("g", { class: "series" });
      for (const run of runs(windows, (w) => w.log_loss)) {
        const se = (i) => (isNum(windows[i].log_loss_stderr) ? windows[i].log_loss_stderr : 0);
        if (run.length === 1) {
          const [x0, x1] = runEdges(windows, run, x, px);
          const i = run[0];
          const top = y(windows[i].log_loss + se(i));
          const bottom = y(Math.max(0, windows[i].log_loss - se(i)));
          series.append(
            s("rect", { class: "band", x: x0, y: top, width: x1 - x0, height: bottom - top }),
          );
          continue;
        }
        const upper = run.map(
          (i, k) =>
            `${k ? "L" : "M"}${px(i).toFixed(1)},${y(windows[i].log_loss + se(i)).toFixed(1)}`,
        );
        const lower = run
          .slice()
          .reverse()
          .map(
            (i) => `L${px(i).toFixed(1)},${y(Math.max(0, windows[i].log_loss - se(i))).toFixed(1)}`,
          );
        series.append(s("path", { class: "band", d: `${upper.join("")}${lower.join("")}Z` }));
      }
      for (const run of runs(windows, (w) => w.baseline_log_loss)) {
        series.append(
          s("path", {
            class: "line-baseline",
            "data-testid": "line-baseline",
            d: seriesPath(windows, run, x, px, (i) => y(windows[i].baseline_log_loss)),
          }),
        );
      }
      for (const run of runs(windows, (w) => w.expected_log_loss)) {
        series.append(
          s("path", {
            class: "line-expected",
            "data-testid": "line-expected",
            d: seriesPath(windows, run, x, px, (i) => y(windows[i].expected_log_loss)),
          }),
        );
      }
      for (const run of runs(windows, (w) => w.log_loss)) {
        series.append(
          s("path", {
            class: "line-loss",
            d: seriesPath(windows, run, x, px, (i) => y(windows[i].log_loss)),
          }),
        );
      }
      const r = plotted <= 96 ? 3 : plotted <= 240 ? 1.75 : 0;
      const points = s("g", { class: "points" });
      windows.forEach((w, i) => {
        if (!isNum(w.log_loss)) return;
        points.append(
          s("circle", {
            class: "pt-loss",
            cx: px(i).toFixed(1),
            cy: y(w.log_loss).toFixed(1),
            r,
            "data-testid": "logloss-point",
            "data-start": w.start,
          }),
        );
      });
      series.append(points);
      svg.append(series, labelLayer);

      const dots = (i) => {
        const w = windows[i];
        const out = [];
        for (const [v, color] of [
          [w.baseline_log_loss, "#6b7280"],
          [w.expected_log_loss, "#7c3aed"],
          [w.log_loss, "#2563eb"],
        ]) {
          if (isNum(v))
            out.push(s("circle", { class: "hover-dot", cx: px(i), cy: y(v), r: 4.5, fill: color }));
        }
        return out;
      };
      return { frame: f, hoverLayer: s("g", { class: "hover" }), dots };
    });
  }

  function coverageChart(holder, ctx) {
    const { windows } = ctx;
    return chart(holder, ctx, ({ t0, t1, mids }) => {
      const f = frame(holder, {
        height: 130,
        t0,
        t1,
        yLo: 0,
        yHi: 1,
        yTickCount: 2,
        yFormat: (v) => `${Math.round(v * 100)}%`,
        yTitle: "labeled (%)",
      });
      const { svg, x, y } = f;
      const plotted = windows.filter((w) => isNum(w.label_coverage)).length;
      svg.setAttribute("data-testid", "coverage-chart");
      svg.setAttribute("data-points", String(plotted));
      svg.setAttribute("aria-label", `label coverage of ${plotted} windows`);
      const px = (i) => x(mids[i]);
      const cov = (i) => y(Math.max(0, Math.min(1, windows[i].label_coverage)));
      const series = s("g", { class: "series" });
      for (const run of runs(windows, (w) => w.label_coverage)) {
        const line = seriesPath(windows, run, x, px, cov);
        const [left, right] = runEdges(windows, run, x, px);
        const area = `${line}L${right.toFixed(1)},${y(0).toFixed(1)}L${left.toFixed(1)},${y(0).toFixed(1)}Z`;
        series.append(
          s("path", { class: "area-coverage", d: area }),
          s("path", { class: "line-coverage", d: line }),
        );
      }
      if (plotted <= 96) {
        windows.forEach((w, i) => {
          if (isNum(w.label_coverage)) {
            series.append(
              s("circle", {
                class: "pt-coverage",
                cx: px(i).toFixed(1),
                cy: cov(i).toFixed(1),
                r: 2.5,
              }),
            );
          }
        });
      }
      svg.append(series);
      const dots = (i) =>
        isNum(windows[i].label_coverage)
          ? [s("circle", { class: "hover-dot", cx: px(i), cy: cov(i), r: 4.5, fill: "#0d9488" })]
          : [];
      return { frame: f, hoverLayer: s("g", { class: "hover" }), dots };
    });
  }

  // ------------------------------------------------------------------ wiring

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const c of state.charts) c.draw();
    }, 120);
  });
  window.addEventListener("hashchange", () => render());
  document.getElementById("refresh").addEventListener("click", () => render({ quiet: true }));
  document.getElementById("key-button").addEventListener("click", () => showKeyForm(null));
  setInterval(() => {
    if (
      document.visibilityState === "visible" &&
      !state.showingKeyForm &&
      app.dataset.state === "ready"
    ) {
      render({ quiet: true });
    }
  }, REFRESH_MS);
  updateKeyButton();
  render();
})();
