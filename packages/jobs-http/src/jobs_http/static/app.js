// The admin page: sign in, counts, the job list with filters and paging, one job's
// details (its result and attempt history too), requeue, cancel and delete; the topics
// with their counts, pause/resume and global limit. The URL (?topic=&status=&offset=&job=) is the view's
// state, so any view can be shared or reloaded.

import { ApiError, api } from "./api.js";
import { byId, el, formatTime, relativeTime, show, truncate } from "./dom.js";

const TOKEN_KEY = "jobs.superuser-token";
const PAGE_SIZE = 20;
const STATS_EVERY_MS = 5000;
const MIN_REFRESH_MS = 1000; // the counts are never fetched more often than this
const STATUSES = ["pending", "processing", "completed", "failed", "cancelled"];

let client = null; // api(token) while signed in
let view = { topic: "", status: "", offset: 0, job: "" };
let currentJob = null; // the job shown in the detail view
let statsTimer = 0;
let lastStatsAt = 0;
let listRequest = 0; // only the newest list/detail request may render
let noticeTimer = 0;
const knownTopics = new Set();

// -- the URL is the state -------------------------------------------------------

function readUrl() {
  const params = new URLSearchParams(window.location.search);
  const status = params.get("status") || "";
  const offset = Number.parseInt(params.get("offset") || "0", 10);
  return {
    topic: (params.get("topic") || "").trim().slice(0, 255),
    status: STATUSES.includes(status) ? status : "",
    offset: Number.isSafeInteger(offset) && offset > 0 ? offset : 0,
    job: (params.get("job") || "").slice(0, 200),
  };
}

function urlFor(state) {
  const params = new URLSearchParams();
  if (state.topic) params.set("topic", state.topic);
  if (state.status) params.set("status", state.status);
  if (state.offset) params.set("offset", String(state.offset));
  if (state.job) params.set("job", state.job);
  const query = params.toString();
  return `${window.location.pathname}${query ? `?${query}` : ""}`;
}

function navigate(next, { push = false } = {}) {
  view = { ...view, ...next };
  const url = urlFor(view);
  if (push) window.history.pushState(null, "", url);
  else window.history.replaceState(null, "", url);
  render();
}

function render() {
  byId("filter-topic").value = view.topic;
  byId("filter-status").value = view.status;
  for (const card of document.querySelectorAll(".stat[data-status]")) {
    card.classList.toggle("active", card.dataset.status === view.status);
    card.setAttribute("aria-pressed", String(card.dataset.status === view.status));
  }
  show(byId("list-view"), !view.job);
  show(byId("topics-view"), !view.job);
  show(byId("schedules-view"), !view.job);
  show(byId("detail-view"), Boolean(view.job));
  if (view.job) loadDetail(view.job);
  else {
    loadList();
    loadTopics();
    loadSchedules();
  }
}

// -- signing in and out ---------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const input = byId("token");
  const error = byId("signin-error");
  const token = input.value.trim();
  show(error, false);
  if (!token) {
    error.textContent = "Enter the superuser token.";
    show(error, true);
    return;
  }
  const button = byId("signin-submit");
  button.disabled = true;
  try {
    const stats = await api(token).stats();
    sessionStorage.setItem(TOKEN_KEY, token);
    input.value = "";
    start(token, stats);
  } catch (err) {
    error.textContent =
      err instanceof ApiError && err.status === 401
        ? "That token was not accepted. Check it and try again."
        : `Could not sign in: ${err.message}`;
    show(error, true);
    input.select();
  } finally {
    button.disabled = false;
  }
}

function start(token, stats) {
  client = api(token);
  show(byId("signin-view"), false);
  show(byId("app-view"), true);
  show(byId("sign-out"), true);
  view = readUrl();
  render();
  if (stats) {
    lastStatsAt = Date.now();
    renderStats(stats);
  } else {
    refreshStats();
  }
  scheduleStats();
}

function signOut(message) {
  client = null;
  currentJob = null;
  sessionStorage.removeItem(TOKEN_KEY);
  window.clearTimeout(statsTimer);
  show(byId("app-view"), false);
  show(byId("sign-out"), false);
  show(byId("signin-view"), true);
  const error = byId("signin-error");
  error.textContent = message || "";
  show(error, Boolean(message));
  byId("token").focus();
}

// A rejected token ends the session wherever it is noticed.
function signedOutBy(err) {
  if (err instanceof ApiError && err.status === 401) {
    signOut("The server no longer accepts this token. Sign in again.");
    return true;
  }
  return false;
}

// -- counts, refreshed live -----------------------------------------------------

async function refreshStats({ force = false } = {}) {
  if (!client) return;
  const now = Date.now();
  if (!force && now - lastStatsAt < MIN_REFRESH_MS) return;
  lastStatsAt = now;
  const note = byId("stats-note");
  try {
    renderStats(await client.stats());
  } catch (err) {
    if (signedOutBy(err)) return;
    note.textContent = `Counts not refreshed: ${err.message}`;
    note.classList.add("error-text");
  }
}

function renderStats(stats) {
  for (const status of STATUSES) byId(`stat-${status}`).textContent = String(stats[status]);
  const finished = stats.completed + stats.failed;
  byId("stat-rate").textContent =
    finished > 0 ? `${(stats.success_rate * 100).toFixed(1)} %` : "–";
  const note = byId("stats-note");
  note.textContent = `${stats.total} jobs · counts updated ${new Date().toLocaleTimeString()}, every ${STATS_EVERY_MS / 1000} s`;
  note.classList.remove("error-text");
}

function scheduleStats() {
  window.clearTimeout(statsTimer);
  statsTimer = window.setTimeout(
    async () => {
      if (!document.hidden) await refreshStats();
      if (client) scheduleStats();
    },
    Math.max(STATS_EVERY_MS, MIN_REFRESH_MS),
  );
}

// -- topics: counts, pause/resume, the global limit --------------------------------

let topicsRequest = 0;

async function loadTopics() {
  if (!client) return;
  const request = ++topicsRequest;
  const state = byId("topics-state");
  try {
    const answer = await client.topics();
    if (request !== topicsRequest) return;
    byId("topics-body").replaceChildren(...answer.items.map(topicRow));
    state.textContent = answer.items.length ? "" : "No topics yet.";
    state.classList.remove("error-text");
    show(state, !answer.items.length);
    for (const topic of answer.items) rememberTopic(topic.topic);
  } catch (err) {
    if (request !== topicsRequest || signedOutBy(err)) return;
    state.textContent = `Could not load topics: ${err.message}`;
    state.classList.add("error-text");
    show(state, true);
  }
}

function topicRow(topic) {
  const row = el("tr", { "data-topic": topic.topic });
  const paused = topic.paused;
  const held = topic.max_running === 0;
  row.append(
    el("td", { class: "mono" }, truncate(topic.topic, 60)),
    el(
      "td",
      {},
      el("span", { class: `badge ${paused || held ? "status-failed" : "status-completed"}` },
        paused ? "paused" : held ? "held (limit 0)" : "active"),
    ),
    ...STATUSES.map((status) => el("td", { "data-label": capitalize(status) }, String(topic.counts[status]))),
  );
  const input = el("input", {
    type: "number",
    min: "0",
    step: "1",
    class: "limit-input",
    placeholder: "none",
    "aria-label": `Limit for ${topic.topic}`,
  });
  input.value = topic.max_running === null ? "" : String(topic.max_running);
  const setLimit = el("button", { type: "button", class: "quiet" }, "Set limit");
  setLimit.addEventListener("click", () => changeLimit(topic.topic, input.value));
  row.append(el("td", {}, input, " ", setLimit));
  const toggle = el("button", { type: "button", class: paused ? "primary" : "" }, paused ? "Resume" : "Pause");
  toggle.addEventListener("click", () => togglePause(topic.topic, paused));
  row.append(el("td", {}, toggle));
  return row;
}

async function togglePause(topic, paused) {
  try {
    if (paused) await client.resume(topic);
    else await client.pause(topic);
    notify(`${paused ? "Resumed" : "Paused"} topic ${truncate(topic, 60)}.`);
  } catch (err) {
    if (signedOutBy(err)) return;
    notify(`Could not ${paused ? "resume" : "pause"} ${truncate(topic, 60)}: ${err.message}`, true);
  }
  loadTopics();
}

async function changeLimit(topic, text) {
  const value = text.trim();
  let maxRunning = null;
  if (value !== "") {
    maxRunning = Number(value);
    if (!Number.isSafeInteger(maxRunning) || maxRunning < 0) {
      notify("A limit is a whole number, 0 or more (empty: no limit).", true);
      return;
    }
  }
  try {
    await client.limit(topic, maxRunning);
    notify(
      maxRunning === null
        ? `Removed the limit of ${truncate(topic, 60)}.`
        : `At most ${maxRunning} of ${truncate(topic, 60)} run at once.`,
    );
  } catch (err) {
    if (signedOutBy(err)) return;
    notify(`Could not set the limit of ${truncate(topic, 60)}: ${err.message}`, true);
  }
  loadTopics();
}

// -- schedules ------------------------------------------------------------------

let schedulesRequest = 0;

async function loadSchedules() {
  if (!client) return;
  const request = ++schedulesRequest;
  const state = byId("schedules-state");
  try {
    const answer = await client.schedules();
    if (request !== schedulesRequest) return;
    byId("schedules-body").replaceChildren(...answer.items.map(scheduleRow));
    state.textContent = answer.items.length ? "" : "No schedules. Code declares them with @jobs.periodic, or PUT /api/schedules/{name}.";
    state.classList.remove("error-text");
    show(state, !answer.items.length);
  } catch (err) {
    if (request !== schedulesRequest || signedOutBy(err)) return;
    state.textContent = `Could not load schedules: ${err.message}`;
    state.classList.add("error-text");
    show(state, true);
  }
}

function jobLink(id) {
  if (!id) return "–";
  const link = el("a", { href: urlFor({ ...view, job: id }), class: "mono", title: id }, `…${id.slice(-8)}`);
  link.addEventListener("click", (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate({ job: id }, { push: true });
  });
  return link;
}

function scheduleRow(schedule) {
  const timing = schedule.cron !== null && schedule.timezone !== "UTC"
    ? `${schedule.timing} (${schedule.timezone})`
    : schedule.timing;
  const toggle = el(
    "button",
    { type: "button", class: schedule.paused ? "primary" : "" },
    schedule.paused ? "Resume" : "Pause",
  );
  toggle.addEventListener("click", () => toggleSchedule(schedule.name, schedule.paused));
  return el(
    "tr",
    { "data-schedule": schedule.name },
    el("td", { class: "mono", "data-label": "Name" }, truncate(schedule.name, 60)),
    el("td", { class: "mono", "data-label": "Topic" }, truncate(schedule.topic, 60)),
    el("td", { class: "mono", "data-label": "Timing" }, truncate(timing, 80)),
    el(
      "td",
      { "data-label": "State" },
      el("span", { class: `badge ${schedule.paused ? "status-failed" : "status-completed"}` },
        schedule.paused ? "paused" : "active"),
    ),
    timeCell(schedule.next_fire_at, "Next fire"),
    timeCell(schedule.last_fired_at, "Last fired"),
    el("td", { "data-label": "Last job" }, jobLink(schedule.last_job_id)),
    el("td", {}, toggle),
  );
}

async function toggleSchedule(name, paused) {
  try {
    if (paused) await client.resumeSchedule(name);
    else await client.pauseSchedule(name);
    notify(`${paused ? "Resumed" : "Paused"} schedule ${truncate(name, 60)}.`);
  } catch (err) {
    if (signedOutBy(err)) return;
    notify(`Could not ${paused ? "resume" : "pause"} ${truncate(name, 60)}: ${err.message}`, true);
  }
  loadSchedules();
}

// -- the list -------------------------------------------------------------------

async function loadList() {
  const request = ++listRequest;
  const body = byId("jobs-body");
  const table = byId("jobs-table");
  table.setAttribute("aria-busy", "true");
  if (!body.rows.length) setListState("Loading jobs…");
  try {
    const page = await client.list({
      topic: view.topic,
      status: view.status,
      limit: PAGE_SIZE,
      offset: view.offset,
    });
    if (request !== listRequest) return;
    if (!page.items.length && page.total > 0 && view.offset > 0) {
      // Past the end (jobs were deleted): go to the last page instead.
      navigate({ offset: Math.floor((page.total - 1) / PAGE_SIZE) * PAGE_SIZE });
      return;
    }
    renderList(page);
  } catch (err) {
    if (request !== listRequest || signedOutBy(err)) return;
    body.replaceChildren();
    setListState(`Could not load jobs: ${err.message}`, true);
    byId("page-info").textContent = "";
  } finally {
    if (request === listRequest) table.removeAttribute("aria-busy");
  }
}

function setListState(text, isError = false) {
  const state = byId("list-state");
  state.replaceChildren(text);
  state.classList.toggle("error-text", isError);
  if (isError) state.append(" ", el("button", { type: "button", class: "quiet", onclick: loadList }, "Retry"));
  show(state, Boolean(text));
}

function renderList(page) {
  byId("jobs-body").replaceChildren(...page.items.map(rowFor));
  const filtered = Boolean(view.topic || view.status);
  // The API takes a bulk action only on a filter: never "every job" by accident.
  show(byId("bulk-bar"), filtered && page.total > 0);
  if (!page.items.length) {
    setListState(
      filtered
        ? "No jobs match these filters."
        : "No jobs yet. They appear here as soon as something enqueues one.",
    );
  } else {
    setListState("");
  }
  const first = page.items.length ? page.offset + 1 : 0;
  const last = page.offset + page.items.length;
  byId("page-info").textContent = page.total ? `${first}–${last} of ${page.total}` : "";
  byId("prev-page").disabled = page.offset === 0;
  byId("next-page").disabled = last >= page.total;
  for (const job of page.items) rememberTopic(job.topic);
}

function rememberTopic(topic) {
  if (knownTopics.has(topic) || knownTopics.size >= 200) return;
  knownTopics.add(topic);
  byId("known-topics").append(el("option", { value: topic }));
}

function timeCell(value, label) {
  return el("td", { "data-label": label }, el("time", { datetime: value, title: value }, formatTime(value)));
}

function rowFor(job) {
  const link = el("a", { href: urlFor({ ...view, job: job.id }), class: "job-link" }, job.topic);
  link.addEventListener("click", (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate({ job: job.id }, { push: true });
  });
  const row = el(
    "tr",
    { "data-job-id": job.id },
    el(
      "td",
      { class: "topic-cell", "data-label": "Topic" },
      link,
      el("span", { class: "job-id mono", title: job.id }, `…${job.id.slice(-8)}`),
      job.unique_key
        ? el("span", { class: "row-key mono", title: `Unique key: ${job.unique_key}` }, `key ${truncate(job.unique_key, 60)}`)
        : null,
      job.last_error
        ? el("span", { class: "row-error", title: truncate(job.last_error, 2000) }, truncate(job.last_error, 140))
        : null,
      cancelRequested(job)
        ? el("span", { class: "row-note", title: job.cancel_requested }, "cancel requested")
        : null,
    ),
    el("td", { "data-label": "Status" }, badge(job.status)),
    el("td", { "data-label": "Priority", class: "num priority" }, String(job.priority)),
    el("td", { "data-label": "Retries", class: "num" }, `${job.retries}/${job.max_retries}`),
    timeCell(job.run_at, "Run at"),
    timeCell(job.updated, "Updated"),
    el("td", { class: "actions" }, ...actionButtons(job)),
  );
  return row;
}

function badge(status) {
  return el("span", { class: `badge status-${STATUSES.includes(status) ? status : "unknown"}` }, status);
}

// Each job says which actions its status allows (`job.actions`, from the server's state
// machine), so the page offers exactly those; the server still refuses others (409).
function allows(job, action) {
  return Array.isArray(job.actions) && job.actions.includes(action);
}

// A running job a client asked to cancel: its worker stops it at its next lease renewal.
function cancelRequested(job) {
  return job.status === "processing" && Boolean(job.cancel_requested);
}

function actionButtons(job) {
  const buttons = [];
  if (allows(job, "requeue")) {
    buttons.push(el("button", { type: "button", class: "small primary", onclick: () => requeue(job) }, "Requeue"));
  }
  if (allows(job, "cancel")) {
    buttons.push(el("button", { type: "button", class: "small", onclick: () => cancel(job) }, "Cancel"));
  }
  if (allows(job, "delete")) {
    buttons.push(el("button", { type: "button", class: "small danger", onclick: () => remove(job) }, "Delete"));
  }
  return buttons;
}

// -- one job --------------------------------------------------------------------

async function loadDetail(id) {
  const request = ++listRequest;
  const state = byId("detail-state");
  byId("back-link").setAttribute("href", urlFor({ ...view, job: "" }));
  if (!currentJob || currentJob.id !== id) {
    show(byId("detail-body"), false);
    state.textContent = "Loading job…";
    state.classList.remove("error-text");
    show(state, true);
  }
  try {
    const job = await client.get(id);
    if (request !== listRequest) return;
    renderDetail(job);
  } catch (err) {
    if (request !== listRequest || signedOutBy(err)) return;
    currentJob = null;
    show(byId("detail-body"), false);
    state.textContent =
      err.status === 404
        ? "There is no job with this id (it may have been deleted)."
        : `Could not load the job: ${err.message}`;
    state.classList.add("error-text");
    show(state, true);
  }
}

function renderDetail(job) {
  currentJob = job;
  show(byId("detail-state"), false);
  byId("detail-title").textContent = job.topic;
  byId("detail-status").replaceWith(Object.assign(badge(job.status), { id: "detail-status" }));
  byId("detail-id").textContent = job.id;
  byId("detail-retries").textContent = `${job.retries} of ${job.max_retries}`;
  byId("detail-priority").textContent = String(job.priority);
  byId("detail-unique_key").textContent = job.unique_key ?? "–";
  for (const field of ["run_at", "locked_until", "cancel_requested", "created", "updated"]) {
    const value = job[field];
    const relative = value ? relativeTime(value) : "";
    byId(`detail-${field}`).textContent = value ? `${value}${relative ? ` (${relative})` : ""}` : "–";
  }
  const error = byId("detail-error");
  error.textContent = job.last_error ?? "No error recorded.";
  error.classList.toggle("none", job.last_error === null || job.last_error === undefined);
  renderResult(job);
  renderAttempts(Array.isArray(job.errors) ? job.errors : []);
  byId("detail-payload").textContent = JSON.stringify(job.payload, null, 2);
  show(byId("detail-cancel-requested-fact"), Boolean(job.cancel_requested));
  show(byId("detail-requeue"), allows(job, "requeue"));
  show(byId("detail-cancel"), allows(job, "cancel"));
  show(byId("detail-delete"), allows(job, "delete"));
  show(byId("detail-body"), true);
}

// A completed job's result: its handler's JSON return value, pretty-printed.
function renderResult(job) {
  const completed = job.status === "completed";
  const nothing = job.result === null || job.result === undefined;
  const result = byId("detail-result");
  result.textContent = nothing ? "The handler returned nothing." : JSON.stringify(job.result, null, 2);
  result.classList.toggle("none", nothing);
  show(byId("detail-result-section"), completed);
}

// The attempt history as a timeline, oldest first and newest last (the order the server
// keeps), each with its number, time and error; a traceback is folded in a <details>.
// Attempts count from 1 again after a requeue, so a number that does not grow marks one.
function renderAttempts(errors) {
  byId("detail-attempts-title").textContent = errors.length
    ? `Failed attempts (${errors.length}, newest last)`
    : "Failed attempts";
  show(byId("detail-attempts-none"), !errors.length);
  const items = [];
  errors.forEach((entry, index) => {
    if (index > 0 && entry.attempt <= errors[index - 1].attempt) {
      items.push(el("li", { class: "timeline-mark" }, "Requeued"));
    }
    items.push(attemptItem(entry));
  });
  byId("detail-attempts").replaceChildren(...items);
}

function attemptItem(entry) {
  const relative = relativeTime(entry.at);
  return el(
    "li",
    { class: "attempt", "data-attempt": entry.attempt },
    el(
      "div",
      { class: "attempt-head" },
      el("span", { class: "attempt-number" }, `Attempt ${entry.attempt}`),
      el("time", { datetime: entry.at, title: entry.at, class: "mono" }, formatTime(entry.at)),
      relative ? el("span", { class: "muted small" }, relative) : null,
    ),
    el("pre", { class: "code error-text attempt-error" }, entry.error || "(no message)"),
    entry.traceback
      ? el(
          "details",
          { class: "traceback" },
          el("summary", {}, "Traceback"),
          el("pre", { class: "code" }, entry.traceback),
        )
      : el("p", { class: "muted small no-traceback" }, "No traceback: nothing was raised."),
  );
}

// -- actions --------------------------------------------------------------------

function describe(job) {
  return `the ${job.topic} job …${job.id.slice(-8)}`;
}

async function requeue(job) {
  const confirmed = await confirmAction({
    title: "Requeue this job?",
    text: `${capitalize(describe(job))} will be pending again, due now, with its retries reset to 0.`,
    action: "Requeue",
  });
  if (!confirmed || !client) return;
  try {
    const updated = await client.requeue(job.id);
    notify(`Requeued ${describe(job)}; it is ${updated.status} now.`);
    jobChanged(updated);
  } catch (err) {
    if (signedOutBy(err)) return;
    notify(`Could not requeue ${describe(job)}: ${err.message}`, true);
    render();
  }
  refreshStats({ force: true });
}

async function cancel(job) {
  const running = job.status === "processing";
  const confirmed = await confirmAction({
    title: "Cancel this job?",
    text: running
      ? `${capitalize(describe(job))} is running: its worker will stop it at its next lease renewal, and it will end cancelled (not retried). If it finishes first, it stays completed.`
      : `${capitalize(describe(job))} will not run: it will be cancelled now. It can be requeued later.`,
    action: "Cancel job",
    dismiss: "Keep job",
    danger: true,
  });
  if (!confirmed || !client) return;
  try {
    const updated = await client.cancel(job.id);
    notify(
      updated.status === "cancelled"
        ? `Cancelled ${describe(job)}.`
        : `Asked to cancel ${describe(job)}; its worker stops it at its next lease renewal.`,
    );
    jobChanged(updated);
  } catch (err) {
    if (signedOutBy(err)) return;
    notify(`Could not cancel ${describe(job)}: ${err.message}`, true);
    render();
  }
  refreshStats({ force: true });
}

async function remove(job) {
  const confirmed = await confirmAction({
    title: "Delete this job?",
    text: `${capitalize(describe(job))} (${job.status}) will be deleted. This cannot be undone.`,
    action: "Delete",
    danger: true,
  });
  if (!confirmed || !client) return;
  try {
    await client.remove(job.id);
    notify(`Deleted ${describe(job)}.`);
    currentJob = null;
    if (view.job === job.id) navigate({ job: "" });
    else loadList();
  } catch (err) {
    if (signedOutBy(err)) return;
    notify(`Could not delete ${describe(job)}: ${err.message}`, true);
    render();
  }
  refreshStats({ force: true });
}

// Show a changed job in place, without reloading the list.
function jobChanged(job) {
  if (view.job === job.id) {
    renderDetail(job);
    return;
  }
  const row = [...byId("jobs-body").rows].find((r) => r.dataset.jobId === job.id);
  if (row) row.replaceWith(rowFor(job));
}

function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function notify(text, isError = false) {
  const notice = byId("notice");
  notice.textContent = text;
  notice.classList.toggle("error", isError);
  notice.classList.toggle("ok", !isError);
  show(notice, true);
  window.clearTimeout(noticeTimer);
  noticeTimer = window.setTimeout(() => show(notice, false), 10000);
}

// -- bulk actions on the filtered list ------------------------------------------

const BULK = {
  requeue: { verb: "Requeue", done: "Requeued", effect: "will be pending again, due now (jobs that are not failed or cancelled are skipped)" },
  cancel: { verb: "Cancel", done: "Cancelled", effect: "will be cancelled; running ones are asked to stop (finished jobs are skipped)" },
  delete: { verb: "Delete", done: "Deleted", effect: "will be deleted for good (completed and running jobs are skipped)" },
};

function filterWords() {
  const parts = [];
  if (view.status) parts.push(view.status);
  if (view.topic) parts.push(`of topic ${view.topic}`);
  return parts.join(" ");
}

async function bulkAction(action) {
  const { verb, done, effect } = BULK[action];
  const selection = { topic: view.topic || null, status: view.status || null };
  let counted;
  try {
    counted = await client.bulk(action, { ...selection, dry_run: true });
  } catch (err) {
    if (signedOutBy(err)) return;
    notify(`Could not count the jobs: ${err.message}`, true);
    return;
  }
  if (!counted.matched) {
    notify(`No job ${filterWords()} to ${verb.toLowerCase()}.`);
    loadList();
    return;
  }
  const jobs = counted.matched === 1 ? "1 job" : `${counted.matched} jobs`;
  const confirmed = await confirmAction({
    title: `${verb} ${jobs}?`,
    text: `Every job ${filterWords()} (${jobs} now) ${effect}.`,
    action: `${verb} ${jobs}`,
    dismiss: "Keep them",
    danger: action !== "requeue",
  });
  if (!confirmed || !client) return;
  try {
    const result = await client.bulk(action, selection);
    const skipped = result.skipped ? `; ${result.skipped} skipped` : "";
    notify(`${done} ${result.changed} of ${result.matched}${skipped}.`);
  } catch (err) {
    if (signedOutBy(err)) return;
    notify(`Could not ${verb.toLowerCase()} the jobs: ${err.message}`, true);
  }
  loadList();
  loadTopics();
  refreshStats({ force: true });
}

// Our own confirmation (a <dialog>), never the browser's confirm box. Resolves true or false.
// `dismiss` names the button that changes nothing ("Cancel" would be ambiguous when the
// action is to cancel a job).
function confirmAction({ title, text, action, dismiss = "Cancel", danger = false }) {
  const dialog = byId("confirm-dialog");
  const ok = byId("confirm-ok");
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  byId("confirm-cancel").textContent = dismiss;
  ok.textContent = action;
  ok.className = danger ? "danger" : "primary";
  return new Promise((resolve) => {
    const listening = new AbortController();
    const finish = (answer) => {
      listening.abort();
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const options = { signal: listening.signal };
    ok.addEventListener("click", () => finish(true), options);
    byId("confirm-cancel").addEventListener("click", () => finish(false), options);
    dialog.addEventListener("close", () => finish(false), options);
    dialog.showModal();
    byId("confirm-cancel").focus();
  });
}

// -- wiring ---------------------------------------------------------------------

function applyFilters(event) {
  event.preventDefault();
  navigate({
    topic: byId("filter-topic").value.trim(),
    status: byId("filter-status").value,
    offset: 0,
    job: "",
  });
}

function wire() {
  byId("signin-form").addEventListener("submit", signIn);
  byId("sign-out").addEventListener("click", () => signOut(""));
  byId("filters").addEventListener("submit", applyFilters);
  byId("filter-status").addEventListener("change", applyFilters);
  byId("clear-filters").addEventListener("click", () => navigate({ topic: "", status: "", offset: 0 }));
  byId("refresh-list").addEventListener("click", () => {
    loadTopics();
    loadSchedules();
    loadList();
    refreshStats();
  });
  byId("prev-page").addEventListener("click", () =>
    navigate({ offset: Math.max(0, view.offset - PAGE_SIZE) }),
  );
  byId("next-page").addEventListener("click", () => navigate({ offset: view.offset + PAGE_SIZE }));
  byId("back-link").addEventListener("click", (event) => {
    event.preventDefault();
    navigate({ job: "" }, { push: true });
  });
  for (const action of Object.keys(BULK)) {
    byId(`bulk-${action}`).addEventListener("click", () => client && bulkAction(action));
  }
  byId("detail-requeue").addEventListener("click", () => currentJob && requeue(currentJob));
  byId("detail-cancel").addEventListener("click", () => currentJob && cancel(currentJob));
  byId("detail-delete").addEventListener("click", () => currentJob && remove(currentJob));
  for (const card of document.querySelectorAll(".stat[data-status]")) {
    card.addEventListener("click", () => {
      const status = card.dataset.status === view.status ? "" : card.dataset.status;
      navigate({ status, offset: 0, job: "" });
    });
  }
  window.addEventListener("popstate", () => {
    if (!client) return;
    view = readUrl();
    render();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshStats();
  });
}

wire();
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved, null);
else signOut("");
