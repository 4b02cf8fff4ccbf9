// The durable_effect dashboard: plain DOM, no framework, no build step.
// Everything shown comes from the JSON API and is only ever set as text (never as HTML).
"use strict";
(() => {
  const base = document.querySelector('meta[name="api-base"]').content;
  const token = new URLSearchParams(location.search).get("token");
  const view = document.getElementById("view");
  const ACTIVE = new Set(["pending", "leased", "sleeping"]);
  const STATUSES = ["pending", "leased", "sleeping", "completed", "failed", "cancelled"];
  const EVENT_TYPES = [
    "run:trigger", "run:coalesced", "run:leased", "run:progress", "run:complete", "run:fail",
    "run:cancel", "run:delete", "run:event-sent", "run:event-received", "step:start", "step:complete", "step:fail", "step:cancel",
    "log:write", "job.started", "job.executed", "job.failed", "job.retryExhausted",
    "job.terminated", "debounce.started", "debounce.flushed", "task.scheduled",
  ];

  // -- DOM and API helpers ---------------------------------------------------------------

  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "value") el.value = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  function url(path, query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query || {})) {
      for (const v of [].concat(value)) if (v !== undefined && v !== null && v !== "") params.append(key, v);
    }
    const q = params.toString();
    return base + path + (q ? "?" + q : "");
  }

  async function api(method, path, body, query) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method, headers };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    const response = await fetch(url(path, query), init);
    if (response.status === 204) return null;
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const error = new Error((data && data.message) || response.statusText);
      error.status = response.status;
      error.body = data || {};
      throw error;
    }
    return data;
  }

  const enc = encodeURIComponent;

  function toast(text, bad) {
    const el = h("div", { class: "toast" + (bad ? " bad" : "") }, text);
    document.getElementById("toasts").append(el);
    setTimeout(() => el.remove(), bad ? 8000 : 4000);
  }

  function failed(error) {
    const where = error.body && error.body.path ? ` (at ${error.body.path})` : "";
    const tag = error.body && error.body.error ? `${error.body.error}: ` : "";
    toast(`${tag}${error.message}${where}`, true);
  }

  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }

  function took(start, end) {
    if (!start) return "–";
    const ms = (end ? new Date(end) : new Date()) - new Date(start);
    if (!isFinite(ms) || ms < 0) return "–";
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  }

  function json(value) {
    return h("pre", {}, value === undefined ? "null" : JSON.stringify(value, null, 2));
  }

  function badge(status) {
    return h("span", { class: `badge ${status}`, "data-status": status }, status);
  }

  function progressOf(progress) {
    if (!progress) return h("span", { class: "muted" }, "–");
    const total = progress.total || 0;
    const current = progress.current || 0;
    const bar = total ? h("progress", { max: total, value: Math.min(current, total) }) : null;
    const text = total ? `${current}/${total}` : `${current}`;
    return h("span", { class: "progress" }, bar,
      h("span", { class: "progress-text" }, text, progress.message ? ` · ${progress.message}` : ""));
  }

  function labelsOf(labels) {
    return Object.entries(labels || {}).map(([k, v]) => h("span", { class: "label" }, `${k}: ${v}`));
  }

  function cell(label, ...children) {
    return h("td", { "data-label": label }, ...children);
  }

  function table(columns, rows, empty) {
    if (!rows.length) return h("div", { class: "card empty" }, empty);
    return h("table", {}, h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows));
  }

  function confirmThen(text, action) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    dialog.returnValue = "";
    dialog.onclose = async () => {
      dialog.onclose = null;
      if (dialog.returnValue !== "ok") return;
      try { await action(); } catch (error) { failed(error); }
    };
    dialog.showModal();
  }

  // A function that runs ``fn`` at most once per ``ms`` (and once more after the last call).
  function throttled(fn, ms) {
    let timer = null;
    let again = false;
    return () => {
      if (timer) { again = true; return; }
      fn();
      timer = setTimeout(function tick() {
        timer = null;
        if (again) { again = false; fn(); timer = setTimeout(tick, ms); }
      }, ms);
    };
  }

  function setNav(name) {
    for (const a of document.querySelectorAll("[data-nav]")) {
      a.classList.toggle("active", a.dataset.nav === name);
    }
  }

  // -- the views ---------------------------------------------------------------------------

  let current = null;  // the view on screen: { onEvent(ev), refresh() }
  let generation = 0;  // renders of an older route are dropped

  function routeOf(hash) {
    const [path, query] = (hash.replace(/^#/, "") || "/").split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { parts, query: new URLSearchParams(query || "") };
  }

  function render() {
    generation += 1;
    const { parts, query } = routeOf(location.hash);
    if (parts[0] === "run" && parts.length === 3) current = runView(parts[1], parts[2]);
    else if (parts[0] === "jobs") current = jobsView();
    else if (parts[0] === "job" && parts.length === 3) current = instanceView(parts[1], parts[2]);
    else current = runsView(query);
    current.refresh();
  }

  function show(mine, ...children) {
    if (mine !== generation) return false;
    view.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
    return true;
  }

  function runsView(query) {
    setNav("runs");
    const mine = generation;
    const state = {
      wf: query.get("wf"),
      statuses: new Set(query.getAll("status")),
      label: query.get("label") || "",
      cursors: [null],
    };

    function go() {
      const q = new URLSearchParams();
      if (state.wf) q.set("wf", state.wf);
      for (const s of state.statuses) q.append("status", s);
      if (state.label) q.set("label", state.label);
      const next = "#/?" + q.toString();
      if (location.hash !== next) location.hash = next;
      else refresh();
    }

    async function refresh() {
      let workflows;
      try { workflows = (await api("GET", "/api/workflows")).workflows; } catch (error) {
        show(mine, h("p", { class: "error" }, `Cannot load workflows: ${error.message}`));
        return;
      }
      if (!workflows.length) {
        show(mine, h("h1", {}, "Runs"), h("div", { class: "card empty" }, "No workflow is registered."));
        return;
      }
      if (!state.wf || !workflows.some((w) => w.name === state.wf)) state.wf = workflows[0].name;
      const wf = workflows.find((w) => w.name === state.wf);
      const cursor = state.cursors[state.cursors.length - 1];
      let page;
      try {
        page = await api("GET", `/api/workflows/${enc(state.wf)}/runs`, null, {
          status: [...state.statuses], label: state.label || undefined, after: cursor, limit: 25,
        });
      } catch (error) { failed(error); page = { runs: [], next_cursor: null }; }
      const total = Object.values(wf.counts).reduce((a, b) => a + b, 0);
      const tabs = h("div", { class: "tabs", role: "tablist" }, workflows.map((w) =>
        h("button", {
          class: "chip" + (w.name === state.wf ? " on" : ""), role: "tab", "data-workflow": w.name,
          onclick: () => { state.wf = w.name; state.statuses.clear(); state.cursors = [null]; go(); },
        }, w.name)));
      const chips = h("div", { class: "tabs" },
        h("button", {
          class: "chip" + (state.statuses.size ? "" : " on"), "data-filter": "all",
          onclick: () => { state.statuses.clear(); state.cursors = [null]; go(); },
        }, "all", h("span", { class: "n", "data-count": "all" }, total)),
        STATUSES.map((s) => h("button", {
          class: "chip" + (state.statuses.has(s) ? " on" : ""), "data-filter": s,
          onclick: () => {
            if (state.statuses.has(s)) state.statuses.delete(s); else state.statuses.add(s);
            state.cursors = [null];
            go();
          },
        }, s, h("span", { class: "n", "data-count": s }, wf.counts[s] || 0))));
      const labelInput = h("input", {
        placeholder: "label filter  key:value", value: state.label, "aria-label": "label filter",
        onkeydown: (e) => {
          if (e.key === "Enter") { state.label = e.target.value.trim(); state.cursors = [null]; go(); }
        },
      });
      const rows = page.runs.map((run) => h("tr", { "data-run-id": run.id },
        cell("Run", h("a", { class: "mono", href: `#/run/${enc(state.wf)}/${enc(run.id)}` }, run.id)),
        cell("Status", badge(run.status)),
        cell("Progress", progressOf(run.progress)),
        cell("Step", run.current_step || h("span", { class: "muted" }, "–")),
        cell("Created", when(run.created_at)),
        cell("Took", took(run.started_at || run.created_at, run.completed_at)),
        cell("Labels", labelsOf(run.labels))));
      const pager = h("div", { class: "row pager" },
        state.cursors.length > 1 ? h("button", {
          class: "secondary", onclick: () => { state.cursors.pop(); refresh(); },
        }, "← Newer") : null,
        page.next_cursor ? h("button", {
          class: "secondary", onclick: () => { state.cursors.push(page.next_cursor); refresh(); },
        }, "Older →") : null);
      show(mine,
        h("div", { class: "row" }, h("h1", { style: null }, "Runs"),
          h("button", { id: "trigger-open", onclick: () => openTrigger(state.wf, refresh) }, "Trigger run")),
        tabs, chips, h("div", { class: "row" }, labelInput),
        table(["Run", "Status", "Progress", "Step", "Created", "Took", "Labels"], rows, "No runs match."),
        pager);
    }

    const soon = throttled(refresh, 1000);
    return {
      refresh,
      onEvent(ev) {
        if (ev.source !== "workflow" || ev.jobName !== state.wf) return;
        if (ev.type === "run:progress") {
          const row = view.querySelector(`tr[data-run-id="${CSS.escape(ev.runId)}"] td[data-label="Progress"]`);
          if (row) { row.replaceChildren(progressOf(ev.progress)); return; }
        }
        soon();
      },
    };
  }

  // A dialog's form: ``submit()`` runs when its OK button is pressed, and the dialog closes
  // when it succeeds; what it throws (an API error or bad JSON) is shown in the dialog, which
  // stays open.
  function openForm(name, submit) {
    const dialog = document.getElementById(name);
    const error = document.getElementById(`${name}-error`);
    error.textContent = "";
    dialog.returnValue = "";
    document.getElementById(`${name}-form`).onsubmit = async (e) => {
      if (e.submitter && e.submitter.value !== "ok") return;
      e.preventDefault();
      try {
        await submit();
        dialog.close();
      } catch (x) {
        error.textContent = x.body
          ? `${x.body.error || "Error"}: ${x.message}` + (x.body.path ? ` (at ${x.body.path})` : "")
          : x.message;
      }
    };
    dialog.showModal();
  }

  // The JSON in input ``id`` (``fallback`` when it is empty); bad JSON throws, naming ``what``.
  function jsonField(id, what, fallback) {
    const text = document.getElementById(id).value.trim();
    if (!text) return fallback;
    try { return JSON.parse(text); } catch (x) { throw new Error(`${what} is not valid JSON: ${x.message}`); }
  }

  function openTrigger(wf, done) {
    document.getElementById("trigger-wf").textContent = wf;
    openForm("trigger", async () => {
      const body = { input: jsonField("trigger-input", "Input", null) };
      const labels = jsonField("trigger-labels", "Labels", undefined);
      if (labels) body.labels = labels;
      const idem = document.getElementById("trigger-idem").value.trim();
      if (idem) body.idempotency_key = idem;
      const result = await api("POST", `/api/workflows/${enc(wf)}/runs`, body);
      toast(`Run ${result.run_id} ${result.disposition}`);
      done();
    });
  }

  function openSend(wf, id, waiting, done) {
    document.getElementById("send-run").textContent = id;
    document.getElementById("send-waiting").textContent = waiting
      ? `It waits at step ${waiting.step} for ${waiting.event ? `a ${waiting.event}` : "an event"}.`
      : "It waits for no event now: the event is queued for its next wait.";
    openForm("send", async () => {
      const body = { event: jsonField("send-event", "The event", null) };
      const eventId = document.getElementById("send-id").value.trim();
      if (eventId) body.event_id = eventId;
      const result = await api("POST", `/api/workflows/${enc(wf)}/runs/${enc(id)}/events`, body);
      toast(result.duplicate ? `Run ${id}: event ${eventId} was already sent` : `Run ${id}: event sent`);
      done();
    });
  }

  function eventsOf(pending) {
    const waiting = pending.waiting;
    const what = waiting
      ? h("p", { id: "waiting-for" }, "Waiting at step ", h("span", { class: "mono" }, waiting.step), " for ",
        waiting.event ? h("span", { class: "mono" }, waiting.event) : "any event",
        ` since ${when(waiting.since)}`, waiting.until ? `, until ${when(waiting.until)}` : ", without a timeout", ".")
      : null;
    const rows = pending.events.map((e) => h("tr", { "data-event-seq": String(e.seq) },
      cell("#", String(e.seq)),
      cell("Event id", e.event_id || h("span", { class: "muted" }, "–")),
      cell("Sent", when(e.sent_at)),
      cell("Event", json(e.event))));
    return [h("h2", {}, `Pending events (${pending.events.length})`), what,
      table(["#", "Event id", "Sent", "Event"], rows, "No event is queued.")];
  }

  function runView(wf, id) {
    setNav("runs");
    const mine = generation;
    const path = `/api/workflows/${enc(wf)}/runs/${enc(id)}`;

    async function act(action, verb, body) {
      confirmThen(`${verb} run ${id}?`, async () => {
        if (action === "delete") {
          await api("DELETE", path);
          toast(`Run ${id} deleted`);
          location.hash = `#/?wf=${enc(wf)}`;
          return;
        }
        const result = await api("POST", `${path}/${action}`, body || {});
        const fresh = action === "retrigger" || action === "fork";
        toast(fresh ? `New run ${result.run_id}` : `Run ${id}: ${action} requested`);
        if (fresh) location.hash = `#/run/${enc(wf)}/${enc(result.run_id)}`;
        else refresh();
      });
    }

    async function refresh() {
      let run; let steps; let logs; let pending;
      try {
        [run, steps, logs, pending] = await Promise.all([
          api("GET", path), api("GET", `${path}/steps`), api("GET", `${path}/logs`),
          api("GET", `${path}/events`),
        ]);
      } catch (error) {
        show(mine, h("p", {}, h("a", { href: `#/?wf=${enc(wf)}` }, `← ${wf}`)),
          h("p", { class: "error" }, error.status === 404 ? `Run ${id} was not found.` : error.message));
        return;
      }
      const active = ACTIVE.has(run.status);
      const actions = h("div", { class: "actions" },
        active ? h("button", { "data-action": "send", onclick: () => openSend(wf, id, pending.waiting, refresh) }, "Send event") : null,
        active ? h("button", { class: "danger", "data-action": "cancel", onclick: () => act("cancel", "Cancel") }, "Cancel") : null,
        !active ? h("button", { "data-action": "retrigger", onclick: () => act("retrigger", "Retrigger") }, "Retrigger") : null,
        run.status === "failed" || run.status === "cancelled"
          ? h("button", { "data-action": "resume", onclick: () => act("resume", "Resume") }, "Resume") : null,
        !active ? h("button", { class: "secondary", "data-action": "fork", onclick: () => act("fork", "Fork (every completed step copied)") }, "Fork") : null,
        !active ? h("button", { class: "danger", "data-action": "delete", onclick: () => act("delete", "Delete") }, "Delete") : null);
      const facts = h("dl", { class: "facts" }, [
        ["Status", badge(run.status)],
        ["Progress", progressOf(run.progress)],
        ["Current step", run.current_step || "–"],
        ["Attempt", String(run.attempt)],
        ["Created", when(run.created_at)],
        ["Started", when(run.started_at)],
        ["Completed", when(run.completed_at)],
        ["Took", took(run.started_at, run.completed_at)],
        ["Labels", labelsOf(run.labels).length ? labelsOf(run.labels) : "–"],
        ["Idempotency key", run.idempotency_key || "–"],
        ["Concurrency key", run.concurrency_key || "–"],
      ].map(([k, v]) => [h("dt", {}, k), h("dd", { "data-fact": k }, v)]));
      const stepRows = steps.steps.map((s) => h("tr", { "data-step": s.name },
        cell("#", String(s.index)),
        cell("Step", s.name),
        cell("Status", badge(s.status)),
        cell("Attempts", String(s.attempts)),
        cell("Started", when(s.started_at)),
        cell("Took", took(s.started_at, s.completed_at)),
        cell(s.error ? "Error" : "Output", s.error ? h("pre", { class: "error" }, s.error) : json(s.output)),
        cell("", !active && s.status === "completed"
          ? h("button", { class: "secondary", "data-fork-from": s.name, title: "a new run that copies the steps before this one and runs from here",
            onclick: () => act("fork", `Fork from step ${s.name}: a new run of`, { from_step: s.name }) }, "Fork here") : "")));
      const logLines = logs.logs.map((l) => h("div", { class: "log" },
        h("span", { class: "muted" }, when(l.at), " "),
        h("span", { class: `lvl-${l.level}` }, l.level.toUpperCase(), " "),
        l.step ? h("span", { class: "muted" }, `[${l.step}] `) : null,
        l.message,
        Object.keys(l.data || {}).length ? h("span", { class: "muted" }, " ", JSON.stringify(l.data)) : null));
      show(mine,
        h("p", {}, h("a", { href: `#/?wf=${enc(wf)}` }, `← ${wf}`)),
        h("div", { class: "row" }, h("h1", { class: "mono" }, id), actions),
        h("div", { class: "grid2" },
          h("div", { class: "card" }, facts),
          h("div", { class: "card" },
            h("h2", { style: null }, "Input"), json(run.input),
            run.status === "completed" ? [h("h2", {}, "Output"), Object.assign(json(run.output), { id: "run-output" })] : null,
            run.error ? [h("h2", {}, "Error"), h("pre", { class: "error", id: "run-error" }, run.error)] : null)),
        h("h2", {}, `Steps (${steps.steps.length})`),
        table(["#", "Step", "Status", "Attempts", "Started", "Took", "Output / error", ""], stepRows, "No step has completed yet."),
        pending.waiting || pending.events.length ? eventsOf(pending) : null,
        h("h2", {}, `Logs (${logs.logs.length})`),
        logLines.length ? h("div", { class: "card" }, logLines) : h("div", { class: "card empty" }, "No log lines."));
    }

    const soon = throttled(refresh, 300);
    return {
      refresh,
      onEvent(ev) {
        if (ev.runId !== id || ev.jobName !== wf) return;
        if (ev.type === "run:progress") {
          const dd = view.querySelector('dd[data-fact="Progress"]');
          if (dd) dd.replaceChildren(progressOf(ev.progress));
        }
        soon();
      },
    };
  }

  function jobActions(job, instance, refresh) {
    return h("div", { class: "actions" }, job.actions.map((action) => h("button", {
      class: action === "terminate" || action === "clear" ? "danger" : "secondary",
      "data-action": action,
      onclick: () => confirmThen(`${action} ${job.name} / ${instance}?`, async () => {
        const result = await api("POST", `/api/jobs/${enc(job.name)}/instances/${enc(instance)}/${action}`);
        toast(`${job.name}/${instance}: ${action} → ${JSON.stringify(result)}`);
        refresh();
      }),
    }, action)));
  }

  function jobsView() {
    setNav("jobs");
    const mine = generation;

    async function refresh() {
      let jobs;
      try { jobs = (await api("GET", "/api/jobs")).jobs; } catch (error) {
        show(mine, h("p", { class: "error" }, `Cannot load jobs: ${error.message}`));
        return;
      }
      const pages = await Promise.all(jobs.map((job) =>
        api("GET", `/api/jobs/${enc(job.name)}/instances`, null, { limit: 50 })
          .catch((error) => ({ instances: [], next_cursor: null, error }))));
      const sections = jobs.map((job, n) => {
        const page = pages[n];
        const rows = page.instances.map((i) => h("tr", { "data-instance": i.id },
          cell("Instance", h("a", { class: "mono", href: `#/job/${enc(job.name)}/${enc(i.id)}` }, i.id)),
          cell("Status", badge(i.status)),
          cell("Next alarm", when(i.next_alarm_at)),
          cell("Created", when(i.created_at)),
          cell("Actions", jobActions(job, i.id, refresh))));
        return h("section", { "data-job": job.name },
          h("h2", {}, job.name, " ", h("span", { class: "muted" }, `(${job.type})`)),
          table(["Instance", "Status", "Next alarm", "Created", "Actions"], rows, "No instances."),
          page.next_cursor ? h("p", { class: "muted" }, "Showing the first 50.") : null);
      });
      const schedules = jobs.filter((job) => job.schedule).map((job, n) => {
        const page = pages[jobs.indexOf(job)];
        const next = page.instances.filter((i) => i.next_alarm_at).map((i) => `${i.id}: ${when(i.next_alarm_at)}`);
        return h("tr", { "data-schedule": job.name },
          cell("Job", job.name),
          cell("Schedule", job.schedule),
          cell("Next runs", (job.next_ticks || []).map(when).join(" · ") || next.join(" · ") || "–"));
      });
      show(mine,
        h("h1", {}, "Jobs"),
        h("h2", {}, "Recurring schedules"),
        table(["Job", "Schedule", "Next runs"], schedules, "No recurring job is registered."),
        sections.length ? sections : h("div", { class: "card empty" }, "No Continuous, Debounce or Task job is registered."));
    }

    const soon = throttled(refresh, 1000);
    return { refresh, onEvent(ev) { if (ev.source === "job") soon(); } };
  }

  function instanceView(jobName, id) {
    setNav("jobs");
    const mine = generation;

    async function refresh() {
      let jobs; let instance;
      try {
        [jobs, instance] = await Promise.all([
          api("GET", "/api/jobs"), api("GET", `/api/jobs/${enc(jobName)}/instances/${enc(id)}`),
        ]);
      } catch (error) {
        show(mine, h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")),
          h("p", { class: "error" }, error.status === 404 ? `${jobName}/${id} was not found.` : error.message));
        return;
      }
      const job = jobs.jobs.find((j) => j.name === jobName);
      const facts = Object.entries(instance).filter(([k]) => k !== "state").map(([k, v]) =>
        [h("dt", {}, k), h("dd", {}, k.endsWith("_at") ? when(v) : k === "status" ? badge(v) : v === null ? "–" : String(v))]);
      show(mine,
        h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")),
        h("div", { class: "row" }, h("h1", { class: "mono" }, `${jobName} / ${id}`), job ? jobActions(job, id, refresh) : null),
        h("div", { class: "grid2" },
          h("div", { class: "card" }, h("dl", { class: "facts" }, facts)),
          h("div", { class: "card" }, h("h2", { style: null }, "State"), json(instance.state))));
    }

    const soon = throttled(refresh, 500);
    return { refresh, onEvent(ev) { if (ev.jobName === jobName && ev.id === id) soon(); } };
  }

  // -- live updates ------------------------------------------------------------------------

  function connect() {
    const live = document.getElementById("live");
    const source = new EventSource(url("/api/stream", token ? { token } : {}));
    let dropped = false;
    source.onopen = () => {
      live.textContent = "live";
      live.classList.replace("off", "on");
      if (dropped && current) current.refresh();  // events may have been missed meanwhile
      dropped = false;
    };
    source.onerror = () => {
      live.textContent = "offline";
      live.classList.replace("on", "off");
      dropped = true;
    };
    const deliver = (message) => {
      let ev;
      try { ev = JSON.parse(message.data); } catch (e) { return; }
      if (current) current.onEvent(ev);
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, deliver);
  }

  window.addEventListener("hashchange", render);
  render();
  connect();
})();
