// Small DOM helpers. Data from the server only ever becomes text nodes or attribute
// values (textContent, append(string), setAttribute): it is never parsed as HTML.

export const byId = (id) => document.getElementById(id);

// el("a", { href: "/_/", class: "x", onclick: fn }, "text", childNode, ...)
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

export function show(node, visible) {
  node.hidden = !visible;
}

export function truncate(text, length) {
  const value = String(text);
  return value.length > length ? `${value.slice(0, length - 1)}…` : value;
}

// "2026-11-23 12:01:05" (UTC), or the raw value if it is not a time.
export function formatTime(value) {
  if (!value) return "–";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toISOString().slice(0, 19).replace("T", " ");
}

// "3 min ago" / "in 2 h" / "just now"; "" if the value is not a time.
export function relativeTime(value, now = Date.now()) {
  const seconds = Math.round((new Date(value).getTime() - now) / 1000);
  if (!Number.isFinite(seconds)) return "";
  const abs = Math.abs(seconds);
  if (abs < 5) return "just now";
  let amount = abs;
  let unit = "s";
  if (abs >= 86400) [amount, unit] = [Math.round(abs / 86400), "d"];
  else if (abs >= 3600) [amount, unit] = [Math.round(abs / 3600), "h"];
  else if (abs >= 60) [amount, unit] = [Math.round(abs / 60), "min"];
  return seconds < 0 ? `${amount} ${unit} ago` : `in ${amount} ${unit}`;
}
