// The JSON API of this server, called with the superuser token as a Bearer header.
// No cookies are sent (credentials: "omit"), so no other site can act as the user.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

// JSON.parse rounds integers beyond 2^53; where the browser can (JSON.rawJSON), keep the
// digits the server sent, so a payload's order id shows exactly as it was stored.
function exactIntegers(_key, value, context) {
  if (
    typeof value === "number" &&
    !Number.isSafeInteger(value) &&
    typeof JSON.rawJSON === "function" &&
    context &&
    /^-?\d+$/.test(context.source)
  ) {
    return JSON.rawJSON(context.source);
  }
  return value;
}

async function call(token, method, path, query, body) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(key, value);
  }
  let response;
  try {
    const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "The server could not be reached.");
  }
  if (response.status === 204) return null;
  let answer = null;
  try {
    answer = JSON.parse(await response.text(), exactIntegers);
  } catch {
    answer = null;
  }
  if (!response.ok) {
    const message = answer && typeof answer.message === "string" ? answer.message : "";
    throw new ApiError(response.status, message || `The server answered ${response.status}.`);
  }
  return answer;
}

const jobPath = (id) => `/api/jobs/${encodeURIComponent(id)}`;
const topicPath = (topic) => `/api/topics/${encodeURIComponent(topic)}`;
const schedulePath = (name) => `/api/schedules/${encodeURIComponent(name)}`;

export function api(token) {
  return {
    stats: () => call(token, "GET", "/api/jobs/stats"),
    // The table shows no payloads, so the list leaves them out (the detail view gets them).
    list: (query) => call(token, "GET", "/api/jobs", { ...query, payloads: "false" }),
    get: (id) => call(token, "GET", jobPath(id)),
    requeue: (id) => call(token, "POST", `${jobPath(id)}/requeue`),
    cancel: (id) => call(token, "POST", `${jobPath(id)}/cancel`),
    remove: (id) => call(token, "DELETE", jobPath(id)),
    // `action` is requeue, cancel or delete; `selection` {topic, status, dry_run, ...}.
    bulk: (action, selection) => call(token, "POST", `/api/jobs/bulk/${action}`, {}, selection),
    topics: () => call(token, "GET", "/api/topics"),
    schedules: () => call(token, "GET", "/api/schedules"),
    pauseSchedule: (name) => call(token, "POST", `${schedulePath(name)}/pause`),
    resumeSchedule: (name) => call(token, "POST", `${schedulePath(name)}/resume`),
    pause: (topic) => call(token, "POST", `${topicPath(topic)}/pause`),
    resume: (topic) => call(token, "POST", `${topicPath(topic)}/resume`),
    limit: (topic, maxRunning) =>
      call(token, "PUT", `${topicPath(topic)}/limit`, {}, { max_running: maxRunning }),
  };
}
