/* mindgate dashboard. Vanilla JS, no dependencies, no build step.
 *
 * Contract: every request goes to this origin with `Authorization: Bearer <key>` when a key was entered
 * (kept in sessionStorage, this tab only). A 401 from any endpoint shows the sign-in form. User text
 * (memories, errors, model names) is only ever put into the page with textContent / text nodes, never
 * parsed as HTML. Pages poll only while they are shown.
 */
"use strict";

(() => {
  const KEY = "mindgate.key";
  const SCOPE = "mindgate.scope";
  const PAGE_SIZE = 20;
  const SEARCH_LIMIT = 50;
  const EXPORT_PAGE = 1000;
  const POLL = { routing: 2000, traffic: 5000, models: 10000, job: 400 };
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  const state = { session: null, page: null, timer: null, scope: null, offset: 0, query: "", current: null,
    jobs: new Map(), lastTraffic: null };

  // ---- DOM helpers (text only: strings always become text nodes) ------------------------------------
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    setProps(node, props);
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  function s(tag, props, ...children) {
    const node = document.createElementNS(SVG, tag);
    setProps(node, props);
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  function setProps(node, props) {
    for (const [name, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.setAttribute("class", value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  const badge = (text, kind) => h("span", { class: "badge" + (kind ? " " + kind : "") }, text);
  const cell = (label, content, cls) => h("td", { "data-label": label, class: cls }, content);

  // ---- formatting ------------------------------------------------------------------------------------
  function fmtBytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = Number(n), i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return i === 0 ? `${v.toFixed(0)} B` : `${v.toFixed(1)} ${units[i]}`;
  }
  const pad = (n) => String(n).padStart(2, "0");
  function fmtClock(date) { return `${pad(date.getHours())}:${pad(date.getMinutes())}`; }
  function fmtTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtClock(d)}:${pad(d.getSeconds())}`;
  }
  function fmtMs(v) {
    if (v === null || v === undefined) return "–";
    return v >= 100 ? `${Math.round(v)} ms` : `${Number(v).toFixed(v >= 10 ? 1 : 2)} ms`;
  }
  const fmtInt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));

  // ---- feedback --------------------------------------------------------------------------------------
  let toastTimer = null;
  function toast(message, bad) {
    const node = $("toast");
    node.textContent = message;
    node.className = bad ? "bad" : "";
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, bad ? 6000 : 3000);
  }
  function fail(error) {
    if (error && error.status === 401) return;  // the sign-in form is already shown
    toast(error && error.message ? error.message : String(error), true);
  }

  // ---- API -------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const key = sessionStorage.getItem(KEY);
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!response.ok) {
      const message = (data && data.error && data.error.message) || `HTTP ${response.status} from ${path}`;
      if (response.status === 401) showLogin(key ? message : "");  // no key yet: just ask for one
      throw new ApiError(response.status, message);
    }
    return data;
  }
  const query = (params) => new URLSearchParams(params).toString();

  // ---- session and navigation ------------------------------------------------------------------------
  const PAGES = { memories: enterMemories, models: enterModels, routing: enterRouting, traffic: enterTraffic };
  const TITLES = { memories: "Memories", models: "Models", routing: "Routing", traffic: "Traffic" };

  function stopPolling() { clearTimeout(state.timer); state.timer = null; }
  function poll(page, fn, ms) {
    stopPolling();
    const tick = async () => {
      if (state.page !== page) return;
      try { await fn(); } catch (error) { fail(error); }
      if (state.page === page) state.timer = setTimeout(tick, typeof ms === "function" ? ms() : ms);
    };
    state.timer = setTimeout(tick, typeof ms === "function" ? ms() : ms);
  }

  function hidePages() {
    for (const section of document.querySelectorAll(".page")) section.hidden = true;
    for (const link of document.querySelectorAll("#nav a")) link.classList.remove("active");
  }
  function showLogin(message) {
    stopPolling();
    state.page = null;
    state.session = null;
    state.scope = null;
    state.jobs.clear();
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(SCOPE);
    hidePages();
    for (const id of ["mem-table", "models-table", "hist-table"]) $(id).tBodies[0].replaceChildren();
    for (const id of ["scope-list", "chains", "routes", "gauges", "endpoints", "traffic-totals", "chart-requests", "chart-latency"]) {
      $(id).replaceChildren();  // nothing from the previous key stays in the page
    }
    $("mem-body").hidden = true;
    $("mem-hint").hidden = false;
    $("scope-id").value = "";
    const dialog = $("mem-dialog");
    if (dialog.open) dialog.close();
    $("booting").hidden = true;
    $("nav").hidden = true;
    $("whoami").textContent = "";
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    document.title = "Sign in · mindgate";
    $("login-key").focus();
  }
  function signedIn(session) {
    state.session = session;
    $("booting").hidden = true;
    $("login").hidden = true;
    $("nav").hidden = false;
    $("whoami").textContent = session.auth_required ? `key: ${session.key}` : "open gateway (no API keys)";
    $("logout").hidden = !session.auth_required;
    route();
  }
  function route() {
    if (!state.session) return;
    const name = location.hash.replace(/^#\/?/, "").split("/")[0] || "memories";
    const page = PAGES[name] ? name : "memories";
    stopPolling();
    hidePages();
    state.page = page;
    $(`page-${page}`).hidden = false;
    document.querySelector(`#nav a[data-page="${page}"]`).classList.add("active");
    document.title = `${TITLES[page]} · mindgate`;
    PAGES[page]();
  }
  async function boot() {
    try {
      signedIn(await api("GET", "/ui/api/session"));
    } catch (error) {
      if (error.status !== 401) { $("booting").textContent = `The gateway did not answer: ${error.message}`; }
    }
  }

  // ---- memories --------------------------------------------------------------------------------------
  const scopeParams = () => ({ [state.scope.kind]: state.scope.id });

  const KIND_TITLES = { user_id: "Users", agent_id: "Agents", run_id: "Runs" };
  async function loadScopes() {
    const { scopes } = await api("GET", "/ui/api/scopes");
    const groups = Object.keys(KIND_TITLES).map((kind) => {
      const rows = scopes.filter((row) => row.kind === kind);
      if (!rows.length) return null;
      return h("div", { class: "scope-group", "data-kind": kind },
        h("h2", {}, KIND_TITLES[kind]),
        h("ul", {}, rows.map((row) => {
          const current = state.scope && state.scope.kind === kind && state.scope.id === row.id;
          return h("li", {}, h("button", { type: "button", class: "scope" + (current ? " active" : ""),
            "data-kind": kind, "data-id": row.id, "aria-pressed": current ? "true" : "false",
            onclick: () => openScope(kind, row.id).catch(fail) },
            h("span", { class: "scope-id" }, row.id), badge(String(row.count))));
        })));
    });
    const list = $("scope-list");
    list.replaceChildren(...groups.filter(Boolean));
    if (!scopes.length) list.append(h("p", { class: "muted" }, "No memories yet in any scope."));
  }
  function enterMemories() {
    loadScopes().catch(fail);
    if (!state.scope) {
      const saved = sessionStorage.getItem(SCOPE);
      const users = state.session.users;
      try { state.scope = saved ? JSON.parse(saved) : null; } catch (_) { state.scope = null; }
      if (!state.scope && users && users.length === 1) state.scope = { kind: "user_id", id: users[0] };
    }
    if (state.scope) {
      $("scope-kind").value = state.scope.kind;
      $("scope-id").value = state.scope.id;
      loadMemories().catch(fail);
    }
  }
  function openScope(kind, id) {
    state.scope = { kind, id };
    state.offset = 0;
    state.query = "";
    $("search-q").value = "";
    sessionStorage.setItem(SCOPE, JSON.stringify(state.scope));
    $("scope-kind").value = kind;
    $("scope-id").value = id;
    return Promise.all([loadMemories(), loadScopes()]);
  }
  async function loadMemories() {
    if (!state.scope) return;
    const label = `${state.scope.kind.replace("_id", "")} “${state.scope.id}”`;
    let rows, more = false;
    if (state.query) {
      const result = await api("POST", "/v1/memories/search",
        { query: state.query, limit: SEARCH_LIMIT, ...scopeParams() });
      rows = result.results;
      $("mem-title").textContent = `Search results for “${state.query}”`;
      $("mem-note").textContent = `${rows.length} match${rows.length === 1 ? "" : "es"} in ${label}, best first`;
    } else {
      const result = await api("GET", `/v1/memories?${query({ ...scopeParams(), limit: PAGE_SIZE + 1,
        offset: state.offset })}`);
      more = result.results.length > PAGE_SIZE;
      rows = result.results.slice(0, PAGE_SIZE);
      $("mem-title").textContent = "Latest";
      $("mem-note").textContent = `${label}, newest first`;
    }
    $("mem-hint").hidden = true;
    $("mem-body").hidden = false;
    $("search-clear").hidden = !state.query;
    renderMemories(rows, Boolean(state.query));
    $("pager").hidden = Boolean(state.query) || (state.offset === 0 && !more);
    $("prev").disabled = state.offset === 0;
    $("next").disabled = !more;
    const page = Math.floor(state.offset / PAGE_SIZE) + 1;
    $("page-label").textContent = `page ${page}`;
  }
  function renderMemories(rows, scored) {
    const body = $("mem-table").tBodies[0];
    body.replaceChildren(...rows.map((m) => h("tr", { class: "clickable", "data-id": m.id,
      onclick: () => openMemory(m.id).catch(fail) },
      cell("Memory", m.memory, "text lead"),
      cell("Score", scored && typeof m.score === "number" ? m.score.toFixed(4) : "–", "num"),
      cell("Updated", fmtTime(m.updated_at || m.created_at), "nowrap"),
      cell("", h("button", { type: "button", class: "small", onclick: (event) => {
        event.stopPropagation();
        openMemory(m.id).catch(fail);
      } }, "Open"), "act"))));
    $("mem-table").querySelector("thead th.num").hidden = !scored;
    for (const td of body.querySelectorAll("td.num")) td.hidden = !scored;
    const empty = $("mem-empty");
    empty.hidden = rows.length > 0;
    empty.textContent = state.query ? "Nothing in this scope matches that search." : "No memories in this scope yet.";
  }

  async function openMemory(id) {
    const [memory, history] = await Promise.all([
      api("GET", `/v1/memories/${encodeURIComponent(id)}?${query(scopeParams())}`),
      api("GET", `/v1/memories/${encodeURIComponent(id)}/history?${query(scopeParams())}`),
    ]);
    state.current = memory;
    const meta = $("dlg-meta");
    const entries = [["ID", memory.id], ["Scope", ["user_id", "agent_id", "run_id"]
      .filter((k) => memory[k]).map((k) => `${k.replace("_id", "")}: ${memory[k]}`).join(", ")],
    ["Created", fmtTime(memory.created_at)], ["Updated", fmtTime(memory.updated_at)]];
    if (memory.metadata) entries.push(["Metadata", JSON.stringify(memory.metadata)]);
    meta.replaceChildren(...entries.flatMap(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
    $("edit-text").value = memory.memory;
    resetDelete();
    renderHistory(history);
    const dialog = $("mem-dialog");
    if (!dialog.open) dialog.showModal();
  }
  function renderHistory(rows) {
    const kinds = { ADD: "ok", UPDATE: "info", DELETE: "bad" };
    $("hist-table").tBodies[0].replaceChildren(...rows.map((row) => h("tr", { "data-event": row.event },
      cell("Event", badge(row.event, kinds[row.event])),
      cell("Old", row.old_memory === null ? "–" : h("span", { class: "old" }, row.old_memory), "text"),
      cell("New", row.new_memory === null ? "–" : row.new_memory, "text"),
      cell("Time", fmtTime(row.created_at), "nowrap"))));
  }
  async function saveMemory(event) {
    event.preventDefault();
    const text = $("edit-text").value.trim();
    if (!text || !state.current) return;
    if (text === state.current.memory) { toast("Nothing changed."); return; }
    await api("PUT", `/v1/memories/${encodeURIComponent(state.current.id)}?${query(scopeParams())}`, { text });
    toast("Saved.");
    await Promise.all([openMemory(state.current.id), loadMemories()]);
  }
  let deleteTimer = null;
  function resetDelete() {
    clearTimeout(deleteTimer);
    const button = $("delete");
    button.classList.remove("confirm");
    button.textContent = "Delete";
  }
  async function deleteMemory() {
    const button = $("delete");
    if (!button.classList.contains("confirm")) {  // two clicks, no native confirm() dialog
      button.classList.add("confirm");
      button.textContent = "Click again to delete";
      deleteTimer = setTimeout(resetDelete, 4000);
      return;
    }
    resetDelete();
    await api("DELETE", `/v1/memories/${encodeURIComponent(state.current.id)}?${query(scopeParams())}`);
    $("mem-dialog").close();
    toast("Deleted. Its history is kept.");
    await Promise.all([loadMemories(), loadScopes()]);
  }
  async function addMemory(event) {
    event.preventDefault();
    const text = $("add-text").value.trim();
    if (!text || !state.scope) return;
    const infer = $("add-infer").checked;
    const result = await api("POST", "/v1/memories", { messages: text, infer, ...scopeParams() });
    $("add-text").value = "";
    const changed = result.results.length;
    toast(changed ? `Remembered (${changed} change${changed === 1 ? "" : "s"}).` : "Nothing new to remember.");
    state.offset = 0;
    await Promise.all([loadMemories(), loadScopes()]);
  }
  async function exportMemories() {
    if (!state.scope) return;
    const all = [];
    for (let offset = 0; ; offset += EXPORT_PAGE) {
      const page = await api("GET", `/v1/memories?${query({ ...scopeParams(), limit: EXPORT_PAGE, offset })}`);
      all.push(...page.results);
      if (page.results.length < EXPORT_PAGE) break;
    }
    const doc = { exported_at: new Date().toISOString(), scope: scopeParams(), count: all.length, memories: all };
    const blob = new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" });
    const link = h("a", { href: URL.createObjectURL(blob),
      download: `mindgate-${state.scope.kind.replace("_id", "")}-${state.scope.id.replace(/[^\w.-]+/g, "_")}.json` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    toast(`Exported ${all.length} memor${all.length === 1 ? "y" : "ies"}.`);
  }

  // ---- models ----------------------------------------------------------------------------------------
  function enterModels() {
    if (!$("models-table").tBodies[0].rows.length) {
      $("models-empty").textContent = "Asking every endpoint for its models…";
      $("models-empty").hidden = false;
    }
    loadModels(false).catch(fail);
    poll("models", tickModels, () => (state.jobs.size || state.downloading ? POLL.job : POLL.models));
  }
  async function tickModels() {
    for (const id of [...state.jobs.keys()]) {
      const job = await api("GET", `/ui/api/models/jobs/${encodeURIComponent(id)}`);
      if (!job.done) continue;
      state.jobs.delete(id);
      if (job.error) toast(`Loading ${job.model} failed: ${job.error}`, true);
      else toast(`${job.model}: ${job.message || job.stage}`);
    }
    await loadModels(false);
  }
  async function loadModels(refresh) {
    const data = await api("GET", `/ui/api/models${refresh ? "?refresh=true" : ""}`);
    for (const model of data.models) if (model.job) state.jobs.set(model.job.id, model.job);
    renderGauges(data.resources);
    renderEndpoints(data.endpoints);
    renderModels(data.models, data.can_manage);
    renderDownloadTargets(data.endpoints);
    renderDownloads(data.downloads || []);
    renderSwitching(await api("GET", "/ui/api/resources"));
  }
  function renderSwitching(data) {
    const parts = [h("h2", null, "Loaded in the gateway")];
    parts.push(data.loaded.length ? h("table", { class: "table cards", id: "loaded-table" },
      h("thead", null, h("tr", null, ["Instance", "Memory (est.)", "Idle", "State"]
        .map((t, i) => h("th", { class: i === 1 || i === 2 ? "num" : null }, t)))),
      h("tbody", null, data.loaded.map((m) => h("tr", { "data-instance": m.instance },
        cell("Instance", m.instance, "lead"), cell("Memory (est.)", fmtBytes(m.held_bytes), "num"),
        cell("Idle", `${Math.round(m.idle_s)} s`, "num"),
        cell("State", m.in_use ? badge("in use", "ok") : m.pinned ? badge("pinned", "info") : badge("idle"))))))
      : h("p", { class: "muted" }, "No in-process model is loaded."));
    for (const t of data.tiers) {
      parts.push(h("p", { class: "tier", "data-chain": t.chain }, h("strong", null, `${t.chain}: `),
        `serving from ${t.current} · ${t.reason}`));
    }
    parts.push(h("h2", null, "Recent switching decisions"));
    parts.push(data.decisions.length ? h("table", { class: "table cards", id: "decisions-table" },
      h("thead", null, h("tr", null, ["Time", "Chain", "Action", "Target", "Why"].map((t) => h("th", null, t)))),
      h("tbody", null, data.decisions.map((d) => h("tr", { "data-action": d.action },
        cell("Time", `${fmtClock(new Date(d.at * 1000))}:${pad(new Date(d.at * 1000).getSeconds())}`),
        cell("Chain", d.chain), cell("Action", badge(d.action, d.action === "skip" || d.action === "tier-down" ? "warn" : "")),
        cell("Target", d.target, "lead"), cell("Why", d.reason, "text")))))
      : h("p", { class: "muted" }, data.fit_routing ? "No model was loaded, unloaded or skipped for memory yet."
        : "Routing by fit is off (resources.fit_routing)."));
    $("switching").replaceChildren(...parts);
  }
  function progressBar(fraction) {
    const pct = Math.round((fraction || 0) * 100);
    const bar = h("span");
    bar.style.width = `${pct}%`;
    return h("div", { class: "progress", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0,
      "aria-valuemax": 100 }, bar);
  }
  function renderDownloadTargets(endpoints) {
    const select = $("download-endpoint");
    const targets = [...endpoints.filter((e) => e.provider === "lmstudio"),
      ...endpoints.filter((e) => e.provider === "ollama")];
    const chosen = select.value;
    select.replaceChildren(...targets.map((e) => h("option", { value: e.endpoint }, `${e.endpoint} (${e.provider})`)));
    if (targets.some((e) => e.endpoint === chosen)) select.value = chosen;
    $("download-form").hidden = !targets.length;
  }
  function renderDownloads(downloads) {
    state.downloading = downloads.some((d) => !d.done || d.status === "starting");
    $("downloads").replaceChildren(...downloads.map((d) => h("div", { class: "download", "data-download": d.model },
      h("strong", null, d.model), h("span", { class: "muted" }, d.endpoint),
      progressBar(d.fraction),
      h("span", null, d.error ? `failed: ${d.error}` : d.total_bytes
        ? `${d.status} ${fmtBytes(d.downloaded_bytes || 0)} / ${fmtBytes(d.total_bytes)}` : d.status))));
  }
  async function startDownload(event) {
    event.preventDefault();
    const model = $("download-model").value.trim();
    if (!model) return;
    await api("POST", "/ui/api/models/download", { model, endpoint: $("download-endpoint").value || null });
    $("download-model").value = "";
    toast(`Downloading ${model}…`);
    state.downloading = true;
    await loadModels(false);
    poll("models", tickModels, () => (state.jobs.size || state.downloading ? POLL.job : POLL.models));
  }
  function gauge(title, free, total, detail) {
    const used = total ? 1 - free / total : 0;
    const level = used > 0.9 ? "bad" : used > 0.75 ? "warn" : "";
    return h("div", { class: "card gauge" },
      h("div", { class: "label" }, h("span", null, title), h("span", { class: "muted" }, detail || "")),
      h("div", { class: "value" }, total ? `${fmtBytes(free)} free` : "–"),
      h("div", { class: "muted" }, total ? `of ${fmtBytes(total)} (${Math.round(used * 100)}% used)` : ""),
      h("div", { class: "bar", role: "meter", "aria-label": `${title} used`, "aria-valuemin": 0, "aria-valuemax": 100,
        "aria-valuenow": Math.round(used * 100) }, h("span", { class: level, style: null })));
  }
  function renderGauges(res) {
    const cards = [gauge("RAM", res.ram_available_bytes, res.ram_total_bytes,
      res.unified_memory ? "unified memory (GPU shares RAM)" : `${res.cpu_count} CPUs, ${Math.round(res.cpu_percent)}% busy`)];
    if (res.gpus.length) {
      for (const gpu of res.gpus) cards.push(gauge(`VRAM · GPU ${gpu.index}`, gpu.free_bytes, gpu.total_bytes, gpu.name));
    } else {
      cards.push(h("div", { class: "card gauge" }, h("div", { class: "label" }, h("span", null, "VRAM")),
        h("div", { class: "value muted" }, "no GPU"),
        h("div", { class: "muted" }, res.unified_memory ? "Apple Silicon: models use the RAM above"
          : res.gpu_status)));
    }
    $("gauges").replaceChildren(...cards);
    // widths are set through the CSSOM (allowed by the CSP), not inline style attributes
    const bars = $("gauges").querySelectorAll(".bar > span");
    const fractions = [res.ram_total_bytes ? 1 - res.ram_available_bytes / res.ram_total_bytes : 0,
      ...res.gpus.map((g) => (g.total_bytes ? 1 - g.free_bytes / g.total_bytes : 0))];
    bars.forEach((bar, i) => { bar.style.width = `${Math.round((fractions[i] || 0) * 100)}%`; });
  }
  function renderEndpoints(endpoints) {
    $("endpoints").replaceChildren(...endpoints.map((e) => h("span", { class: "chip", "data-endpoint": e.endpoint,
      title: e.reachable ? `${e.url || "in-process"} via ${e.api || "?"}` : e.error || "unreachable" },
      h("span", { class: e.reachable ? "dot" : "dot bad" }), h("strong", null, e.endpoint),
      h("span", { class: "muted" }, e.reachable ? `${e.provider} · ${e.model_count} model${e.model_count === 1 ? "" : "s"}`
        : `${e.provider} · unreachable`))));
  }
  function fitCell(model) {
    const fit = model.fit || {};
    if (fit.already_loaded || model.state === "loaded") return badge("loaded", "ok");
    const need = fit.needed_bytes ? `needs ${fmtBytes(fit.needed_bytes)}` : "";
    const title = fit.error || (fit.free_bytes !== null && fit.free_bytes !== undefined
      ? `${need} at ${fit.context_length} tokens; ${fmtBytes(fit.free_bytes)} free` : "memory of another machine is not visible here");
    const verdict = fit.fits === true ? badge("fits", "ok") : fit.fits === false ? badge("too big", "bad") : badge("unknown");
    return h("span", { title }, verdict, need ? h("div", { class: "sub" }, need) : null);
  }
  function contextText(model) {
    if (model.loaded_context_length && model.max_context_length) {
      return `${fmtInt(model.loaded_context_length)} / ${fmtInt(model.max_context_length)}`;
    }
    return fmtInt(model.max_context_length || model.loaded_context_length);
  }
  function actionCell(model, canManage) {
    const job = model.job && !model.job.done ? model.job : null;
    if (job) {
      const pct = Math.round((job.fraction || 0) * 100);
      const bar = h("span");
      bar.style.width = `${pct}%`;
      const how = job.estimated ? " (estimated)" : "";
      return h("div", { class: "job-box" }, h("div", { class: "job" }, `${job.stage} ${pct}%${how}`),
        h("div", { class: "progress", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0,
          "aria-valuemax": 100 }, bar));
    }
    const loaded = model.state === "loaded";
    const label = loaded ? "Unload" : "Load";
    return h("button", { type: "button", class: loaded ? "small" : "small primary", disabled: !canManage,
      title: canManage ? `${label} ${model.id} on ${model.endpoint}` : "this key may not load or unload models",
      onclick: () => (loaded ? unloadModel(model) : loadModel(model)).catch(fail) }, label);
  }
  function renderModels(models, canManage) {
    const stateKind = { loaded: "ok", "not-loaded": "", unknown: "warn" };
    $("models-table").tBodies[0].replaceChildren(...models.map((m) => h("tr",
      { "data-model": m.id, "data-endpoint": m.endpoint, "data-state": m.state },
      cell("Model", m.id, "id lead"),
      cell("Endpoint", h("span", null, m.endpoint,
        m.provider !== m.endpoint ? h("span", { class: "muted" }, ` (${m.provider})`) : null)),
      cell("Type", m.type),
      cell("State", badge(m.state, stateKind[m.state])),
      cell("Context", contextText(m), "num"),
      cell("Size", fmtBytes(m.size_bytes), "num"),
      cell("Quant.", m.quantization || "–"),
      cell("Fits", fitCell(m)),
      cell("", actionCell(m, canManage), "act"))));
    $("models-empty").textContent = "No models found on any endpoint.";
    $("models-empty").hidden = models.length > 0;
  }
  async function loadModel(model) {
    const job = await api("POST", "/ui/api/models/load", { endpoint: model.endpoint, model: model.id });
    state.jobs.set(job.id, job);
    await loadModels(false);
    poll("models", tickModels, () => (state.jobs.size ? POLL.job : POLL.models));
  }
  async function unloadModel(model) {
    const result = await api("POST", "/ui/api/models/unload", { endpoint: model.endpoint, model: model.id });
    toast(result.unloaded.length ? `Unloaded ${result.unloaded.join(", ")}.` : `${model.id} was not loaded.`);
    await loadModels(false);
  }

  // ---- routing ---------------------------------------------------------------------------------------
  function enterRouting() {
    loadRouting().catch(fail);
    poll("routing", loadRouting, POLL.routing);
  }
  async function loadRouting() {
    const data = await api("GET", "/ui/api/routing");
    const breaker = { closed: ["closed", "ok"], half_open: ["half-open", "warn"], open: ["open", "bad"] };
    $("chains").replaceChildren(...data.chains.map((chain) => h("section", { class: "chain", "data-chain": chain.name },
      h("div", { class: "chain-head" }, h("h2", null, chain.name), chain.default ? badge("default", "info") : null,
        h("span", { class: "muted" }, `${chain.targets.length} target${chain.targets.length === 1 ? "" : "s"} · `
          + `${fmtInt(chain.fallbacks)} fallback${chain.fallbacks === 1 ? "" : "s"}`)),
      h("table", { class: "table cards" },
        h("thead", null, h("tr", null, ["Target", "Breaker", "Requests", "OK", "Errors", "p50", "p99", "Last error"]
          .map((t, i) => h("th", { class: i >= 2 && i <= 6 ? "num" : null }, t)))),
        h("tbody", null, chain.targets.map((t) => {
          const [text, kind] = breaker[t.state] || ["direct", ""];
          const errors = Object.entries(t.errors || {});
          const errorCount = errors.reduce((sum, [, n]) => sum + n, 0);
          const latency = t.latency_ms || {};
          return h("tr", { "data-target": t.name, "data-state": t.state || "direct" },
            cell("Target", h("span", null, t.name, h("div", { class: "muted" }, `${t.provider} · ${t.model}`)), "lead"),
            cell("Breaker", h("span", null, badge(text, kind),
              t.state === "open" && t.retry_in !== null ? h("div", { class: "sub" }, `retry in ${Math.ceil(t.retry_in)} s`) : null)),
            cell("Requests", fmtInt(t.requests), "num"),
            cell("OK", fmtInt(t.successes), "num"),
            cell("Errors", h("span", { title: errors.map(([k, n]) => `${k}: ${n}`).join(", ") || "none" },
              fmtInt(t.requests === undefined ? null : errorCount)), "num"),
            cell("p50", fmtMs(latency.p50), "num"),
            cell("p99", fmtMs(latency.p99), "num"),
            cell("Last error", t.last_error ? h("span", { class: "err-text" }, t.last_error) : "–", "text"));
        }))))));
    $("routes").replaceChildren(...(data.routes.length ? [h("h2", null, "Semantic routes"),
      h("table", { class: "table cards" }, h("thead", null, h("tr", null, h("th", null, "Route"), h("th", null, "Target"),
        h("th", { class: "num" }, "Threshold"))),
      h("tbody", null, data.routes.map((r) => h("tr", null, cell("Route", r.name, "lead"), cell("Target", r.target),
        cell("Threshold", r.threshold.toFixed(2), "num")))))] : []));
    $("routing-updated").textContent = `live · updated ${fmtClock(new Date())}:${pad(new Date().getSeconds())}`;
  }

  // ---- traffic ---------------------------------------------------------------------------------------
  function enterTraffic() {
    loadTraffic().catch(fail);
    poll("traffic", loadTraffic, POLL.traffic);
  }
  async function loadTraffic() {
    const data = await api("GET", "/ui/api/timeseries");
    state.lastTraffic = data;
    drawTraffic(data);
    $("traffic-updated").textContent = `updated ${fmtClock(new Date())}:${pad(new Date().getSeconds())}`;
  }
  function drawTraffic(data) {
    const pts = data.points;
    const sum = (k) => pts.reduce((acc, p) => acc + (p[k] || 0), 0);
    const recent = [...pts].reverse().find((p) => p.p50_ms !== null);
    const stat = (label, value) => h("div", { class: "card stat" }, h("div", { class: "value" }, value),
      h("div", { class: "label" }, label));
    const latest = recent ? `${fmtMs(recent.p50_ms).replace(" ms", "")} / ${fmtMs(recent.p99_ms)}` : "–";
    $("traffic-totals").replaceChildren(stat("requests", fmtInt(sum("requests"))), stat("fallbacks", fmtInt(sum("fallbacks"))),
      stat("5xx errors", fmtInt(sum("errors"))), stat("latest p50 / p99", latest));
    chart($("chart-requests"), pts, {
      bars: [{ key: "requests", color: "#8fa9f0", label: "requests" }, { key: "fallbacks", color: "#d9822b", label: "fallbacks" }],
      integer: true, empty: "No API requests in the last hour", unit: "" });
    chart($("chart-latency"), pts, {
      lines: [{ key: "p50_ms", color: "#2d5be3", label: "p50" }, { key: "p99_ms", color: "#c4302b", label: "p99" }],
      empty: "No latency samples in the last hour", unit: " ms" });
  }
  function niceStep(raw, integer) {
    if (raw <= 0) return 1;
    const p = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * p).find((v) => v >= raw);
    return integer ? Math.max(1, Math.round(step)) : step;
  }
  function chart(container, points, spec) {
    const width = Math.max(280, container.clientWidth || 600);
    const height = width < 600 ? 190 : 230;
    const keys = [...(spec.bars || []), ...(spec.lines || [])].map((x) => x.key);
    const max = Math.max(0, ...points.flatMap((p) => keys.map((k) => p[k] || 0)));
    const step = niceStep(max / 4, spec.integer);
    const top = Math.max(step, Math.ceil(max / step) * step);
    const tickLabel = (v) => (spec.integer ? fmtInt(v) : (v < 10 ? Number(v.toFixed(2)) : Math.round(v)) + spec.unit);
    const m = { top: 12, right: 14, bottom: 26, left: 14 + 7 * String(tickLabel(top)).length };
    const w = width - m.left - m.right, hgt = height - m.top - m.bottom;
    const y = (v) => m.top + hgt - (v / top) * hgt;
    const slot = w / points.length;
    const x = (i) => m.left + i * slot;
    const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
      "aria-label": (spec.bars || spec.lines).map((x2) => x2.label).join(", ") + " per minute" });
    const grid = s("g", { class: "grid" }), axis = s("g", { class: "axis" });
    for (let v = 0; v <= top + step / 2; v += step) {
      grid.append(s("line", { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v) }));
      axis.append(s("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end" }, String(tickLabel(v))));
    }
    axis.append(s("line", { x1: m.left, x2: width - m.right, y1: y(0), y2: y(0) }));
    const every = width < 600 ? 20 : 10;
    points.forEach((p, i) => {
      const date = new Date(p.t * 1000);
      if (date.getMinutes() % every === 0) {
        axis.append(s("line", { x1: x(i) + slot / 2, x2: x(i) + slot / 2, y1: y(0), y2: y(0) + 4 }));
        axis.append(s("text", { x: x(i) + slot / 2, y: height - 8, "text-anchor": "middle" }, fmtClock(date)));
      }
    });
    svg.append(grid, axis);
    const series = s("g", { class: "series" });
    (spec.bars || []).forEach((bar, b) => {
      const inset = b === 0 ? 0.12 : 0.34;
      points.forEach((p, i) => {
        const v = p[bar.key] || 0;
        if (!v) return;
        series.append(s("rect", { x: x(i) + slot * inset, width: Math.max(1, slot * (1 - 2 * inset)), y: y(v),
          height: y(0) - y(v), fill: bar.color, "data-key": bar.key },
        s("title", null, `${fmtClock(new Date(p.t * 1000))} · ${v} ${bar.label}`)));
      });
    });
    for (const line of spec.lines || []) {
      let d = "";
      points.forEach((p, i) => {
        const v = p[line.key];
        if (v === null || v === undefined) { d += " "; return; }
        const prev = i > 0 ? points[i - 1][line.key] : null;
        const next = i + 1 < points.length ? points[i + 1][line.key] : null;
        const joined = (prev !== null && prev !== undefined) || (next !== null && next !== undefined);
        d += `${prev === null || prev === undefined ? "M" : "L"}${(x(i) + slot / 2).toFixed(1)},${y(v).toFixed(1)}`;
        // dots mark each minute where there is room, and always a minute with no neighbour to join
        series.append(s("circle", { cx: x(i) + slot / 2, cy: y(v), r: slot >= 8 || !joined ? 2.5 : 1.2,
          fill: line.color, "data-key": line.key },
        s("title", null, `${fmtClock(new Date(p.t * 1000))} · ${line.label} ${fmtMs(v)}`)));
      });
      if (d.trim()) series.prepend(s("path", { d: d.trim(), fill: "none", stroke: line.color, "stroke-width": 2 }));
    }
    svg.append(series);
    if (!points.some((p) => keys.some((k) => p[k]))) {
      svg.append(s("text", { x: m.left + w / 2, y: m.top + hgt / 2, "text-anchor": "middle", class: "empty",
        fill: "#667085" }, spec.empty));
    }
    const legend = h("div", { class: "legend" }, [...(spec.bars || []), ...(spec.lines || [])].map((item) => {
      const swatch = h("span", { class: "swatch" });
      swatch.style.background = item.color;
      return h("span", null, swatch, item.label);
    }));
    container.replaceChildren(svg, legend);
  }
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (state.page === "traffic" && state.lastTraffic) drawTraffic(state.lastTraffic); }, 150);
  });

  // ---- wiring ----------------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("login-key").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY, key);
      $("login-key").value = "";
      api("GET", "/ui/api/session").then(signedIn).catch(fail);
    });
    $("logout").addEventListener("click", () => showLogin("Signed out."));
    $("scope-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("scope-id").value.trim();
      if (id) openScope($("scope-kind").value, id).catch(fail);
    });
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.query = $("search-q").value.trim();
      loadMemories().catch(fail);
    });
    $("search-clear").addEventListener("click", () => {
      state.query = "";
      $("search-q").value = "";
      loadMemories().catch(fail);
    });
    $("prev").addEventListener("click", () => {
      state.offset = Math.max(0, state.offset - PAGE_SIZE);
      loadMemories().catch(fail);
    });
    $("next").addEventListener("click", () => {
      state.offset += PAGE_SIZE;
      loadMemories().catch(fail);
    });
    $("add-form").addEventListener("submit", (event) => addMemory(event).catch(fail));
    $("export").addEventListener("click", () => exportMemories().catch(fail));
    $("edit-form").addEventListener("submit", (event) => saveMemory(event).catch(fail));
    $("delete").addEventListener("click", () => deleteMemory().catch(fail));
    $("dlg-close").addEventListener("click", () => $("mem-dialog").close());
    $("models-refresh").addEventListener("click", () => loadModels(true).catch(fail));
    $("download-form").addEventListener("submit", (event) => startDownload(event).catch(fail));
    window.addEventListener("hashchange", route);
    boot();
  });
})();
