"use strict";
// Flame Chat main page: user list, conversation, live feed (SSE, polling fallback).
// All user-supplied text goes through textContent: nothing a user writes becomes markup.

const state = {
  me: document.querySelector('meta[name="me"]').content,
  csrf: document.querySelector('meta[name="csrf-token"]').content,
  peer: null,
  oldestCursor: null,
  polling: null,
};

const $ = (id) => document.getElementById(id);

function uuid4() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

async function api(method, path, body) {
  const headers = { "X-CSRF-Token": state.csrf };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { window.location.assign("/login"); throw new Error("logged out"); }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((data && data.error && data.error.message) || `HTTP ${response.status}`);
    error.code = data && data.error && data.error.code;
    throw error;
  }
  return data;
}

// --- people -------------------------------------------------------------------------

function userItem(username) {
  return document.querySelector(`#users li[data-username="${CSS.escape(username)}"]`);
}

function setDot(li, online) {
  const dot = li.querySelector(".dot");
  dot.className = `dot ${online ? "online" : "offline"}`;
  dot.title = online ? "online" : "offline";
  li.dataset.online = online ? "true" : "false";
}

function renderUsers(list) {
  const ul = $("users");
  for (const user of list.users) {
    if (user.username === state.me) continue;
    let li = userItem(user.username);
    if (!li) {
      li = document.createElement("li");
      li.className = "user";
      li.dataset.username = user.username;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "open-conversation";
      for (const cls of ["dot", "name", "handle muted", "unread"]) {
        const span = document.createElement("span");
        span.className = cls;
        button.appendChild(span);
      }
      button.querySelector(".unread").hidden = true;
      li.appendChild(button);
      ul.appendChild(li);
    }
    li.querySelector(".name").textContent = user.display_name;
    li.querySelector(".handle").textContent = `@${user.username}`;
    setDot(li, user.online);
  }
  $("users-source").textContent = list.source === "cache" ? "(cached)" : "";
}

async function loadUsers() {
  try { renderUsers(await api("GET", "/users")); } catch (exc) { /* keep what we show */ }
}

// --- messages -----------------------------------------------------------------------

const STATE_LABEL = { pending: "pending", sent: "sent", delivered: "delivered", read: "read", failed: "failed" };

function messageItem(id) {
  return document.querySelector(`#messages li[data-id="${CSS.escape(id)}"]`);
}

function renderMessage(message, { prepend = false } = {}) {
  let li = messageItem(message.id);
  if (!li) {
    li = document.createElement("li");
    li.dataset.id = message.id;
    const body = document.createElement("span");
    body.className = "body";
    const meta = document.createElement("span");
    meta.className = "meta";
    const time = document.createElement("time");
    const st = document.createElement("span");
    st.className = "state";
    meta.append(time, " ", st);
    li.append(body, meta);
    const list = $("messages");
    if (prepend) list.prepend(li); else list.appendChild(li);
  }
  li.className = `message ${message.direction} ${message.state}`;
  li.dataset.state = message.state;
  li.querySelector(".body").textContent = message.body;
  const when = new Date(message.sent_at);
  li.querySelector("time").textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  li.querySelector("time").dateTime = when.toISOString();
  li.querySelector(".state").textContent = message.direction === "out" ? STATE_LABEL[message.state] || message.state : "";
  if (message.direction === "in") li.querySelector(".state").hidden = true;
  li.title = message.error || "";
  return li;
}

function setMessageState(id, newState, error) {
  const li = messageItem(id);
  if (!li) return;
  const order = ["pending", "sent", "delivered", "read"];
  if (order.indexOf(newState) < order.indexOf(li.dataset.state) && newState !== "failed") return;
  li.className = li.className.replace(/\b(pending|sent|delivered|read|failed)\b/, newState);
  li.dataset.state = newState;
  li.querySelector(".state").textContent = STATE_LABEL[newState] || newState;
  li.title = error || "";
}

// Read receipts: the newest incoming message shown in a visible tab, and all before it, are read.
let readTimer = null;
function markReadSoon() {
  if (readTimer) return;
  readTimer = setTimeout(async () => {
    readTimer = null;
    if (!state.peer || document.visibilityState !== "visible") return;
    const unread = document.querySelectorAll("#messages li.message.in.delivered");
    if (!unread.length) return;
    const newest = unread[unread.length - 1];
    try {
      await api("POST", `/conversations/${encodeURIComponent(state.peer)}/read`, { up_to: newest.dataset.id });
      unread.forEach((li) => setMessageState(li.dataset.id, "read"));
    } catch (exc) { /* retried at the next message or focus */ }
  }, 300);
}
document.addEventListener("visibilitychange", markReadSoon);

function scrollToEnd() { const list = $("messages"); list.scrollTop = list.scrollHeight; }

async function openConversation(peer) {
  state.peer = peer;
  document.querySelectorAll("#users li").forEach((li) => li.classList.toggle("active", li.dataset.username === peer));
  const li = userItem(peer);
  if (li) { const badge = li.querySelector(".unread"); badge.hidden = true; badge.textContent = ""; }
  $("peer-name").textContent = li ? li.querySelector(".name").textContent : peer;
  $("messages").replaceChildren();
  $("empty").hidden = true;
  $("conversation").hidden = false;
  const page = await api("GET", `/conversations/${encodeURIComponent(peer)}/messages?limit=50`);
  page.messages.forEach((m) => renderMessage(m));
  state.oldestCursor = page.next_cursor;
  $("load-older").hidden = !page.next_cursor;
  scrollToEnd();
  markReadSoon();
  $("message-input").focus();
}

async function loadOlder() {
  if (!state.oldestCursor) return;
  const page = await api("GET", `/conversations/${encodeURIComponent(state.peer)}/messages?limit=50&before=${state.oldestCursor}`);
  page.messages.slice().reverse().forEach((m) => renderMessage(m, { prepend: true }));
  state.oldestCursor = page.next_cursor;
  $("load-older").hidden = !page.next_cursor;
}

async function sendMessage(event) {
  event.preventDefault();
  const input = $("message-input");
  const text = input.value;
  if (!text.trim() || !state.peer) return;
  const id = uuid4();
  const peer = state.peer;
  renderMessage({ id, direction: "out", state: "pending", body: text, sent_at: Date.now() });
  scrollToEnd();
  input.value = "";
  $("send-error").hidden = true;
  try {
    const saved = await api("POST", `/conversations/${encodeURIComponent(peer)}/messages`, { id, body: text });
    if (state.peer === peer) renderMessage(saved);
  } catch (exc) {
    setMessageState(id, "failed", exc.message);
    $("send-error").textContent = exc.message;
    $("send-error").hidden = false;
  }
}

// --- live events ----------------------------------------------------------------------

function onEvent(event) {
  switch (event.type) {
    case "message": {
      const m = event.message;
      if (m.conversation === state.peer) { renderMessage(m); scrollToEnd(); markReadSoon(); }
      else if (m.direction === "in") {
        const li = userItem(m.conversation);
        if (li) { const badge = li.querySelector(".unread"); badge.hidden = false; badge.textContent = String((+badge.textContent || 0) + 1); }
        else loadUsers();
      }
      break;
    }
    case "message_state":
      if (event.conversation === state.peer) setMessageState(event.id, event.state, event.error);
      break;
    case "presence": {
      const li = userItem(event.username);
      if (li) setDot(li, event.online); else if (event.username !== state.me) loadUsers();
      break;
    }
    case "directory":
      $("directory-banner").hidden = event.status !== "offline";
      loadUsers();
      break;
    case "resync":
      loadUsers();
      if (state.peer) openConversation(state.peer);
      break;
    default:
      break;
  }
}

function startPolling() {
  if (state.polling) return;
  state.polling = setInterval(async () => {
    await loadUsers();
    if (state.peer) {
      const page = await api("GET", `/conversations/${encodeURIComponent(state.peer)}/messages?limit=50`);
      page.messages.forEach((m) => renderMessage(m));
    }
  }, 3000);
}

function connect() {
  if (!("EventSource" in window)) { startPolling(); return; }
  const source = new EventSource("/api/v1/events");
  const types = ["message", "message_state", "presence", "directory", "resync"];
  for (const type of types) source.addEventListener(type, (e) => onEvent(JSON.parse(e.data)));
  source.addEventListener("open", () => {
    if (state.polling) { clearInterval(state.polling); state.polling = null; }
    document.body.dataset.live = "sse";
  });
  source.addEventListener("error", () => {
    document.body.dataset.live = "polling";
    startPolling();  // EventSource reconnects by itself; poll meanwhile
  });
}

// --- wiring ---------------------------------------------------------------------------

$("users").addEventListener("click", (event) => {
  const li = event.target.closest("li.user");
  if (li) openConversation(li.dataset.username);
});
$("send-form").addEventListener("submit", sendMessage);
$("message-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("send-form").requestSubmit(); }
});
$("load-older").addEventListener("click", loadOlder);
$("logout").addEventListener("click", async () => {
  try { await api("DELETE", "/sessions/current"); } finally { window.location.assign("/login"); }
});

connect();
loadUsers();
