// chatsink's page for analysts, on the same /v1 API that scripts use.
//
// Safe by construction: everything a meeting participant wrote (text, names, file names, links)
// reaches the page only as text nodes or as attribute values set one by one; nothing is ever
// parsed as HTML. Only http(s) URLs become links or pictures. The server sends a strict
// Content-Security-Policy besides (no inline script, no other origin but https: pictures).
"use strict";

const TOKEN_KEY = "chatsink.read-token";
const PAGE = 50;
// Characters of one message shown: a longer one (chat text is anyone's, 10 MB of it included)
// would stall the page's layout; the whole text is in the exports and the API.
const MAX_SHOWN = 20000;
const FILTERS = ["q", "user", "custom_participant", "type", "pinned", "edited", "private", "session", "meeting", "since", "until"];

// ---------------------------------------------------------------------------------------------
// Building the page: elements and text nodes only.

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "href") {
      const safe = safeHref(value);
      if (safe) node.setAttribute("href", safe);
    } else if (key === "src") {
      const safe = externalUrl(value);
      if (safe) node.setAttribute("src", safe);
    } else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(reveal(String(child))));
  }
}

// Bidirectional overrides, embeddings and isolates (U+202A-U+202E, U+2066-U+2069) shown as what
// they are: in a name or a file name they turn "gpj.exe" into what reads as "exe.jpg".
function reveal(text) {
  return text.replace(/[\u202A-\u202E\u2066-\u2069]/g, (c) => `⟦U+${c.codePointAt(0).toString(16).toUpperCase()}⟧`);
}

// An http(s) URL written by a stranger, or null: `javascript:`, `data:` and the rest are text.
function externalUrl(raw) {
  if (typeof raw !== "string") return null;
  try {
    const url = new URL(raw);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch (_) {
    return null;
  }
}

// A link within this page (built by this code, always under /ui/), or an external http(s) one.
function safeHref(raw) {
  if (typeof raw === "string" && raw.startsWith("/ui/")) return raw;
  return externalUrl(raw);
}

function clear(node) {
  while (node.firstChild) node.firstChild.remove();
}

function link(path, ...children) {
  return el("a", { href: path, onclick: follow }, ...children);
}

function follow(event) {
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  go(event.currentTarget.getAttribute("href"));
}

function go(path, replace) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  route();
}

function seg(value) {
  return encodeURIComponent(value);
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (Array.isArray(value)) value.forEach((v) => search.append(key, v));
    else if (value !== undefined && value !== null && value !== "") search.append(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// A time in the browser's zone, with UTC on hover.
function when(iso) {
  if (!iso) return el("span", { class: "muted" }, "–");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return el("span", {}, iso);
  return el("time", { datetime: iso, title: `${date.toISOString()} (UTC)` }, date.toLocaleString());
}

function size(bytes) {
  if (typeof bytes !== "number") return "";
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

// ---------------------------------------------------------------------------------------------
// The API: the token from this tab's sessionStorage, as a Bearer header, never in a URL.

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, params, asToken) {
  const response = await fetch(path + query(params || {}), {
    headers: { Authorization: `Bearer ${asToken || token()}`, Accept: "application/json" },
    credentials: "omit",
    cache: "no-store",
  });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// ---------------------------------------------------------------------------------------------
// Routes: /ui/, /ui/sessions/{id}, /ui/search, /ui/users, /ui/users/{id}, /ui/stats.

const app = () => document.getElementById("app");

function params() {
  return new URLSearchParams(location.search);
}

async function route() {
  const root = app();
  clear(root);
  delete root.dataset.view;
  const signedIn = Boolean(token());
  document.getElementById("nav").hidden = !signedIn;
  if (!signedIn) return signIn(root);
  const path = location.pathname;
  try {
    // A malformed escape in a hand-typed address is a page that does not exist, not a crash.
    const parts = path.replace(/^\/ui\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    if (parts.length === 0) await sessions(root);
    else if (parts[0] === "sessions" && parts.length === 2) await transcript(root, parts[1]);
    else if (parts[0] === "search" && parts.length === 1) await search(root);
    else if (parts[0] === "users" && parts.length === 1) await users(root);
    else if (parts[0] === "users" && parts.length === 2) await userMessages(root, parts[1]);
    else if (parts[0] === "stats" && parts.length === 1) await stats(root);
    else root.append(el("h1", {}, "Not found"), el("p", {}, `No page at ${path}.`), link("/ui/", "Sessions"));
    root.dataset.view = parts[0] || "sessions";
    performance.mark("chatsink:painted");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      return route();
    }
    clear(root);
    root.append(el("h1", {}, "Something went wrong"), el("p", { class: "error", role: "alert" }, `Could not load this page: ${error.message}`));
    root.dataset.view = "error";
  }
}

function signIn(root, message) {
  const input = el("input", { type: "password", name: "token", id: "token", autocomplete: "current-password", required: true });
  const problem = el("p", { class: "error", id: "token-error", role: "alert" }, message || "");
  const form = el(
    "form",
    { class: "filters", id: "sign-in", "aria-describedby": "token-error" },
    el("div", { class: "field wide" }, el("label", { for: "token" }, "Read token"), input, problem),
    el("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const candidate = input.value.trim();
    problem.textContent = "";
    try {
      await api("/v1/sessions", { limit: 1 }, candidate);
    } catch (error) {
      problem.textContent =
        error instanceof ApiError && error.status === 401
          ? "This token was not accepted. Check it and try again."
          : `Could not check the token: ${error.message}`;
      input.focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, candidate);
    route();
  });
  root.append(el("h1", {}, "Sign in"), el("p", { class: "muted" }, "The token is kept for this tab only."), form);
  root.dataset.view = "sign-in";
  input.focus();
}

// ---------------------------------------------------------------------------------------------
// Sessions, newest first.

async function sessions(root) {
  const cursor = params().get("cursor");
  const page = await api("/v1/sessions", { limit: PAGE, cursor });
  root.append(el("h1", {}, "Sessions"));
  if (page.sessions.length === 0) {
    root.append(el("p", { class: "muted" }, "No sessions are archived yet."));
    return;
  }
  const rows = page.sessions.map((s) =>
    el(
      "tr",
      {},
      el("td", {}, link(`/ui/sessions/${seg(s.sessionId)}`, s.title || s.sessionId)),
      el("td", { class: "optional" }, s.meetingId || ""),
      el("td", {}, when(s.startedAt || s.createdAt)),
      el("td", { class: "optional" }, when(s.endedAt)),
      el("td", {}, `${s.messageCounts.total}`, el("span", { class: "muted" }, ` (${s.messageCounts.text} text, ${s.messageCounts.image} image, ${s.messageCounts.file} file${s.messageCounts.other ? `, ${s.messageCounts.other} other` : ""})`)),
      el("td", {}, `${s.pinnedCount}`),
      el(
        "td",
        {},
        el("span", { class: `status ${s.status}` }, s.status.replace("_", " ")),
        s.rejectedRows ? el("span", { class: "muted" }, ` ${s.rejectedRows} rejected`) : null,
        s.lastError ? el("p", { class: "error last-error", title: s.lastError }, s.lastError.length > 160 ? `${s.lastError.slice(0, 159)}…` : s.lastError) : null,
      ),
    ),
  );
  root.append(
    el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        { id: "sessions" },
        el("thead", {}, el("tr", {}, ["Title", "Meeting", "Started", "Ended", "Messages", "Pinned", "Ingest"].map((h, i) => el("th", { scope: "col", class: i === 1 || i === 3 ? "optional" : null }, h)))),
        el("tbody", {}, rows),
      ),
    ),
    pager(page.next_cursor, cursor),
  );
}

// Next page on the API's cursor, kept in the URL so a page can be shared and reloaded.
function pager(next, current) {
  const here = params();
  const bar = el("div", { class: "toolbar" });
  if (current) {
    here.delete("cursor");
    bar.append(link(`${location.pathname}${query(Object.fromEntries(here))}`, "First page"));
  }
  if (next) {
    const after = params();
    after.set("cursor", next);
    bar.append(link(`${location.pathname}?${after.toString()}`, "Next page"));
  }
  return bar;
}

// ---------------------------------------------------------------------------------------------
// One session's transcript, as a conversation.

async function transcript(root, id) {
  const here = params();
  const pinned = here.get("pinned") === "true";
  const at = here.get("at");
  const cursor = here.get("cursor");
  const [session, page] = await Promise.all([
    api(`/v1/sessions/${seg(id)}`),
    api(`/v1/sessions/${seg(id)}/messages`, { limit: 200, order: "asc", pinned: pinned ? "true" : null, since: at, cursor }),
  ]);
  const toggle = el("input", { type: "checkbox", id: "pinned-only", checked: pinned });
  toggle.addEventListener("change", () => {
    const next = params();
    next.delete("cursor");
    if (toggle.checked) next.set("pinned", "true");
    else next.delete("pinned");
    go(`${location.pathname}?${next.toString()}`);
  });
  const jump = el("input", { type: "datetime-local", id: "jump", step: 1 });
  const jumpForm = el(
    "form",
    { class: "toolbar", id: "jump-form" },
    el("label", { for: "jump" }, "Jump to a time (your zone)"),
    jump,
    el("button", { type: "submit" }, "Go"),
  );
  jumpForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!jump.value) return;
    const next = params();
    next.delete("cursor");
    next.set("at", new Date(jump.value).toISOString());
    go(`${location.pathname}?${next.toString()}`);
  });
  append(root, [
    el("h1", {}, session.title || session.sessionId),
    el(
      "p",
      { class: "muted" },
      "Session ", el("span", { class: "uid" }, session.sessionId),
      session.meetingId ? [", meeting ", el("span", { class: "uid" }, session.meetingId)] : null,
      ", ", when(session.startedAt || session.createdAt), " to ", when(session.endedAt),
      `, ${session.messageCounts.total} messages, ${session.pinnedCount} pinned, ingest ${session.status.replace("_", " ")}`,
    ),
    session.lastError ? el("p", { class: "error last-error" }, `Last ingest error: ${session.lastError}`) : null,
    el("div", { class: "toolbar" }, el("span", {}, toggle, " ", el("label", { for: "pinned-only", class: "inline" }, "Pinned only")), jumpForm),
  ]);
  const list = el("section", { id: "messages", "aria-label": "Messages" });
  if (page.messages.length === 0) list.append(el("p", { class: "muted" }, at ? "No messages at or after that time." : "No messages."));
  for (const message of page.messages) list.append(messageCard(message, null, false));
  root.append(list, pager(page.next_cursor, cursor));
  const target = location.hash ? document.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
  if (target) {
    target.classList.add("target");
    target.scrollIntoView({ block: "center" });
  }
}

function anchor(message) {
  return `m-${message.id}`;
}

// Where a message is in its transcript: the page that starts at its time.
function placeOf(message) {
  return `/ui/sessions/${seg(message.sessionId)}${query({ at: message.time })}#${seg(anchor(message))}`;
}

function messageCard(message, highlight, showWhere) {
  const body = [];
  if (message.type === "text") {
    body.push(el("p", { class: "text" }, marked(shown(message.message || ""), highlight)), cut(message.message));
  } else if (message.type === "image") {
    const url = externalUrl(message.link);
    if (url) {
      body.push(el("p", {}, el("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, "Image"), " ", el("span", { class: "muted" }, url)));
      // Shown inline only over https (the page's policy loads no other pictures).
      if (url.startsWith("https:")) {
        const picture = el("img", { class: "picture", src: url, alt: `Image from ${message.displayName}`, loading: "lazy", referrerpolicy: "no-referrer" });
        picture.addEventListener("error", () => picture.remove());
        body.push(picture);
      }
    } else {
      body.push(el("p", { class: "text" }, "Image: ", message.link || ""));
    }
  } else if (message.type === "file") {
    const url = externalUrl(message.link);
    body.push(
      el(
        "div",
        { class: "chip" },
        el("span", { class: "name" }, marked(message.name || "file", highlight)),
        el("span", { class: "muted" }, size(message.size)),
        url ? el("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, "Download") : el("span", { class: "muted" }, message.link || ""),
      ),
    );
  } else {
    const payload = message.payload || message.message || "";
    body.push(el("p", { class: "text" }, el("span", { class: "badge" }, message.type), " ", shown(payload)), cut(payload));
  }
  return el(
    "article",
    { class: "msg", id: anchor(message) },
    el(
      "header",
      {},
      el("span", { class: "sender", title: message.userId }, marked(message.displayName, highlight)),
      message.customParticipantId
        ? link(`/ui/search?custom_participant=${encodeURIComponent(message.customParticipantId)}`, message.customParticipantId)
        : null,
      when(message.time),
      message.pinned ? el("span", { class: "badge pinned" }, "pinned") : null,
      message.isEdited ? el("span", { class: "badge" }, "edited") : null,
      message.private
        ? el("span", { class: "badge private", title: `Private: to ${(message.targetUserIds || []).join(", ") || "no one left"}` }, "private")
        : null,
      showWhere
        ? link(placeOf(message), "in its transcript")
        : el("a", { href: placeOf(message), onclick: follow, class: "muted", "aria-label": "Permalink to this message" }, "#"),
    ),
    body,
    details(message),
  );
}

// A message's recipients and the dump's extra columns, folded away (text nodes only).
function details(message) {
  const rows = [];
  if (message.private) rows.push(["Sent to", (message.targetUserIds || []).join(", ") || "(no one left)"]);
  if (message.extra && typeof message.extra === "object") {
    for (const [column, value] of Object.entries(message.extra)) rows.push([column, String(value)]);
  }
  if (!rows.length) return null;
  const list = el("dl", { class: "extra" });
  for (const [name, value] of rows) list.append(el("dt", {}, name), el("dd", {}, shown(value)));
  return el("details", { class: "msg-details" }, el("summary", { class: "muted" }, "Details"), list);
}

function shown(text) {
  return text.length > MAX_SHOWN ? text.slice(0, MAX_SHOWN) : text;
}

// A note under a message shown in part.
function cut(text) {
  if (!text || text.length <= MAX_SHOWN) return null;
  return el("p", { class: "muted cut" }, `Showing the first ${MAX_SHOWN.toLocaleString()} of ${text.length.toLocaleString()} characters; the whole message is in the exports and the API.`);
}

// `text` as text nodes, with what the search matched in <mark> elements.
function marked(text, pattern) {
  const value = reveal(String(text));
  if (!pattern) return value;
  const parts = [];
  let last = 0;
  pattern.lastIndex = 0;
  for (const match of value.matchAll(pattern)) {
    if (match[0].length === 0) continue;
    if (match.index > last) parts.push(value.slice(last, match.index));
    parts.push(el("mark", {}, match[0]));
    last = match.index + match[0].length;
  }
  if (last < value.length) parts.push(value.slice(last));
  return parts;
}

// The words of a `q` search as one case-insensitive pattern (`word*` matches word starts).
function highlighter(q) {
  if (!q) return null;
  const terms = [];
  const tokens = q.match(/"(?:[^"]|"")*"|[^\s()]+/g) || [];
  for (let token of tokens) {
    if (/^(AND|OR|NOT)$/.test(token) || /^NEAR\(?$/i.test(token) || /^,?\d+\)?$/.test(token)) continue;
    token = token.replace(/^(text|file_name|display_name):/, "").replace(/^NEAR\(/i, "");
    let prefix = false;
    if (token.endsWith("*")) {
      prefix = true;
      token = token.slice(0, -1);
    }
    token = token.replace(/^"|"$/g, "").replace(/""/g, '"').replace(/[,)]+$/, "");
    if (!token) continue;
    const escaped = token.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/\s+/g, "\\s+");
    terms.push(prefix ? `${escaped}[\\p{L}\\p{N}_]*` : escaped);
  }
  if (terms.length === 0) return null;
  return new RegExp(`(${terms.join("|")})`, "giu");
}

// ---------------------------------------------------------------------------------------------
// Search across the archive, with filters kept in the URL.

const Q_HELP = [
  ["word word", "both words (AND)"],
  ['"a phrase"', "the words together, in order"],
  ["pre*", "words starting with pre"],
  ["a OR b", "either"],
  ["a NOT b", "a without b"],
  ["NEAR(a b, 5)", "a and b within 5 words"],
  ["text: file_name: display_name:", "only in that column"],
  ["( )", "grouping"],
];

// "1 message", "12 messages", and whether more follow on the next page.
function counted(n, more) {
  return `${n} message${n === 1 ? "" : "s"}${more ? " on this page, more on the next" : ""}`;
}

function filterForm(action, values, submitLabel) {
  const field = (name, label, input, wide) => {
    const problem = el("p", { class: "error", id: `${name}-error`, role: "alert" });
    return el("div", { class: `field${wide ? " wide" : ""}` }, el("label", { for: `f-${name}` }, label), input, problem);
  };
  const text = (name, placeholder) => el("input", { type: "text", id: `f-${name}`, name, value: values.get(name) || "", placeholder: placeholder || "" });
  const choice = (name, options) => {
    const select = el("select", { id: `f-${name}`, name });
    for (const [value, label] of options) select.append(el("option", { value, selected: (values.get(name) || "") === value }, label));
    return select;
  };
  const yesNo = [["", "any"], ["true", "yes"], ["false", "no"]];
  const form = el(
    "form",
    { class: "filters", id: "filters", role: "search" },
    field("q", "Search text", text("q", 'e.g. budget "next steps" plan*'), true),
    field("user", "User id", text("user")),
    field("custom_participant", "App user id", text("custom_participant")),
    field("type", "Type", choice("type", [["", "any"], ["text", "text"], ["image", "image"], ["file", "file"]])),
    field("pinned", "Pinned", choice("pinned", yesNo)),
    field("edited", "Edited", choice("edited", yesNo)),
    field("private", "Private", choice("private", yesNo)),
    field("session", "Session id", text("session")),
    field("meeting", "Meeting id", text("meeting")),
    field("since", "Since (date or time)", text("since", "YYYY-MM-DD")),
    field("until", "Until", text("until")),
    el("button", { type: "submit", class: "primary" }, submitLabel),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = {};
    for (const name of FILTERS) {
      const value = form.elements[name].value.trim();
      if (value) chosen[name] = value;
    }
    go(`${action}${query(chosen)}`);
  });
  const help = el(
    "details",
    { class: "help" },
    el("summary", {}, "Search syntax"),
    el("ul", {}, Q_HELP.map(([syntax, meaning]) => el("li", {}, el("code", {}, syntax), ` ${meaning}`))),
  );
  return [form, help];
}

function chosenFilters() {
  const here = params();
  const chosen = {};
  for (const name of FILTERS) if (here.get(name)) chosen[name] = here.get(name);
  return chosen;
}

// Shows an API error next to the field it names (the search box for `q`); true when it did.
function showFieldError(error) {
  const name = error instanceof ApiError && error.status === 400 ? error.body.parameter : null;
  const spot = name ? document.getElementById(`${name}-error`) : null;
  if (!spot) return false;
  spot.textContent = name === "q" ? error.message.replace(/see the q syntax in \/openapi\.json/, "see Search syntax below") : error.message;
  if (name === "q") document.querySelector("details.help")?.setAttribute("open", "");
  document.getElementById(`f-${name}`)?.setAttribute("aria-invalid", "true");
  return true;
}

async function search(root) {
  const here = params();
  root.append(el("h1", {}, "Search"), ...filterForm("/ui/search", here, "Search"));
  const chosen = chosenFilters();
  if (Object.keys(chosen).length === 0) {
    root.append(el("p", { class: "muted" }, "Search the whole archive, or choose filters."));
    return;
  }
  await results(root, "/v1/messages", chosen, highlighter(chosen.q));
}

async function results(root, endpoint, chosen, highlight) {
  const cursor = params().get("cursor");
  let page;
  try {
    page = await api(endpoint, { ...chosen, limit: PAGE, cursor });
  } catch (error) {
    if (showFieldError(error)) return;
    throw error;
  }
  const status = el("span", { class: "muted", id: "export-status", role: "status" });
  root.append(
    el(
      "div",
      { class: "toolbar" },
      el("span", { id: "result-count" }, counted(page.messages.length, page.next_cursor)),
      el("button", { type: "button", id: "export-csv", onclick: () => exportAs(endpoint, chosen, "csv", status) }, "Export CSV"),
      el("button", { type: "button", id: "export-ndjson", onclick: () => exportAs(endpoint, chosen, "ndjson", status) }, "Export NDJSON"),
      endpoint === "/v1/messages" ? link(`/ui/stats${query(chosen)}`, "Stats for these filters") : null,
      status,
    ),
  );
  const list = el("section", { id: "results", "aria-label": "Results" });
  if (page.messages.length === 0) list.append(el("p", { class: "muted" }, "Nothing matches."));
  for (const message of page.messages) list.append(messageCard(message, highlight, true));
  root.append(list, pager(page.next_cursor, cursor));
}

// Downloads exactly the current filters' messages: fetched with the token (never in a URL),
// saved from a blob.
async function exportAs(endpoint, chosen, format, status) {
  status.textContent = `Exporting ${format.toUpperCase()}…`;
  try {
    const response = await fetch(endpoint + query({ ...chosen, format }), {
      headers: { Authorization: `Bearer ${token()}` },
      credentials: "omit",
      cache: "no-store",
    });
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    const blob = await response.blob();
    const save = document.createElement("a");
    save.href = URL.createObjectURL(blob);
    save.download = `chatsink-messages.${format === "csv" ? "csv" : "ndjson"}`;
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(save.href), 60000);
    status.textContent = `Exported ${blob.size} bytes as ${format.toUpperCase()}.`;
  } catch (error) {
    status.textContent = `Export failed: ${error.message}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Users, and one user's messages across sessions.

async function users(root) {
  const cursor = params().get("cursor");
  const page = await api("/v1/users", { limit: 100, cursor });
  root.append(el("h1", {}, "Users"));
  const rows = page.users.map((u) =>
    el(
      "tr",
      {},
      el("td", {}, link(`/ui/users/${seg(u.id)}`, u.displayName || u.id)),
      el("td", { class: "uid" }, u.id),
      el(
        "td",
        {},
        u.customParticipantId
          ? link(`/ui/search?custom_participant=${encodeURIComponent(u.customParticipantId)}`, u.customParticipantId)
          : "",
      ),
      el("td", {}, `${u.messageCount}`),
      el("td", {}, `${u.sessionCount}`),
    ),
  );
  root.append(
    el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        { id: "users" },
        el("thead", {}, el("tr", {}, ["Name", "User id", "App user id", "Messages", "Sessions"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, rows),
      ),
    ),
    pager(page.next_cursor, cursor),
  );
}

async function userMessages(root, id) {
  root.append(el("h1", {}, "Messages of ", el("span", { class: "uid" }, id)));
  await results(root, `/v1/users/${seg(id)}/messages`, { order: "desc" }, null);
}

// ---------------------------------------------------------------------------------------------
// Stats for the current filters, as SVG charts with their numbers written out.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// Horizontal bars, one per (label, count), each with its number.
function barChart(title, rows) {
  const max = Math.max(1, ...rows.map((r) => r[1]));
  const rowHeight = 22;
  const labelWidth = 170;
  const width = 640;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${rows.length * rowHeight + 8}`, role: "img", "aria-label": title });
  chart.append(svg("title", {}, title));
  rows.forEach(([label, count], i) => {
    const y = i * rowHeight + 4;
    const bar = Math.max(1, Math.round(((width - labelWidth - 70) * count) / max));
    const shown = String(label).length > 26 ? `${String(label).slice(0, 25)}…` : String(label);
    chart.append(
      svg("text", { x: 0, y: y + 14 }, shown),
      svg("rect", { class: "bar", x: labelWidth, y, width: bar, height: rowHeight - 6 }),
      svg("text", { x: labelWidth + bar + 6, y: y + 14 }, count),
    );
  });
  return el("figure", { class: "chart" }, el("figcaption", {}, el("h2", {}, title)), rows.length ? chart : el("p", { class: "muted" }, "None."));
}

async function stats(root) {
  const here = params();
  root.append(el("h1", {}, "Stats"), ...filterForm("/ui/stats", here, "Show stats"));
  const chosen = chosenFilters();
  let result;
  try {
    result = await api("/v1/stats", chosen);
  } catch (error) {
    if (showFieldError(error)) return;
    throw error;
  }
  const pinnedShare = result.total ? ((100 * result.byPinned.true) / result.total).toFixed(1) : "0.0";
  root.append(
    el("p", { id: "stats-total" }, `${result.total} message(s); ${result.byPinned.true} pinned (${pinnedShare}%).`),
    barChart("Messages per day", result.byDay.map((d) => [d.day, d.count])),
    barChart("By type", Object.entries(result.byType)),
    barChart("Pinned", [["pinned", result.byPinned.true], ["not pinned", result.byPinned.false]]),
    barChart("Top users", result.topUsers.map((u) => [u.displayName || u.userId, u.count])),
  );
}

// ---------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  for (const a of document.querySelectorAll("#nav a, a.brand")) a.addEventListener("click", follow);
  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    go("/ui/");
  });
  window.addEventListener("popstate", route);
  route();
});
