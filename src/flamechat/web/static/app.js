"use strict";
// The main page: people list, conversation, live feed. Shared plumbing is in common.js.
// Message bodies arrive as sanitised HTML from the server (Markdown subset → nh3);
// everything else a user wrote is set through textContent.

(() => {
  const { me, api, on, $ } = flame;
  const state = { peer: null, oldestCursor: null, newerCursor: null, blocked: new Set() };

  function uuid4() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // --- people ---------------------------------------------------------------------------

  function userItem(username) {
    return document.querySelector(`#users li[data-username="${CSS.escape(username)}"]`);
  }

  function setPresence(li, user) {
    const status = user.online ? user.status || "online" : "offline";
    const dot = li.querySelector(".dot");
    dot.className = `dot ${status}`;
    dot.title = status;
    li.dataset.online = user.online ? "true" : "false";
    li.dataset.status = status;
    li.querySelector(".status-text").textContent = user.online ? user.status_text || "" : "";
    if (user.display_name) li.querySelector(".name").textContent = user.display_name;
  }

  function ensureUserItem(username) {
    let li = userItem(username);
    if (li) return li;
    li = document.createElement("li");
    li.className = "user";
    li.dataset.username = username;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "open-conversation";
    for (const cls of ["dot", "name", "handle muted", "unread"]) {
      const span = document.createElement("span");
      span.className = cls;
      button.appendChild(span);
    }
    button.querySelector(".unread").hidden = true;
    button.querySelector(".handle").textContent = `@${username}`;
    const text = document.createElement("span");
    text.className = "status-text muted";
    li.append(button, text);
    $("users").appendChild(li);
    return li;
  }

  function renderUsers(list) {
    for (const user of list.users) {
      if (user.username === me) continue;
      setPresence(ensureUserItem(user.username), user);
      if (user.blocked) state.blocked.add(user.username); else state.blocked.delete(user.username);
    }
    $("users-source").textContent = list.source === "cache" ? "(cached)" : "";
  }

  async function loadUsers() {
    try { renderUsers(await api("GET", "/users")); } catch (exc) { /* keep what we show */ }
  }

  // --- messages ---------------------------------------------------------------------------

  const ORDER = ["pending", "sent", "delivered", "read"];

  function messageItem(id) {
    return document.querySelector(`#messages li[data-id="${CSS.escape(id)}"]`);
  }

  function renderMessage(message, { prepend = false } = {}) {
    let li = messageItem(message.id);
    if (!li) {
      li = document.createElement("li");
      li.dataset.id = message.id;
      const body = document.createElement("div");
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
    const body = li.querySelector(".body");
    if (typeof message.html === "string") body.innerHTML = message.html;  // sanitised server-side (nh3)
    else body.textContent = message.body;
    const when = new Date(message.sent_at);
    const time = li.querySelector("time");
    time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    time.dateTime = when.toISOString();
    const st = li.querySelector(".state");
    st.textContent = message.direction === "out" ? message.state : "";
    st.hidden = message.direction !== "out";
    li.title = message.error || "";
    return li;
  }

  function setMessageState(id, newState, error) {
    const li = messageItem(id);
    if (!li) return;
    if (newState !== "failed" && ORDER.indexOf(newState) < ORDER.indexOf(li.dataset.state)) return;
    li.classList.remove(...ORDER, "failed");
    li.classList.add(newState);
    li.dataset.state = newState;
    if (li.classList.contains("out")) li.querySelector(".state").textContent = newState;
    li.title = error || "";
  }

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

  function showBlocked(peer) {
    const blocked = state.blocked.has(peer);
    $("block-toggle").textContent = blocked ? "Unblock" : "Block";
    $("blocked-note").hidden = !blocked;
  }

  async function openConversation(peer, { around = null } = {}) {
    state.peer = peer;
    document.querySelectorAll("#users li").forEach((li) => li.classList.toggle("active", li.dataset.username === peer));
    const li = userItem(peer);
    if (li) { const badge = li.querySelector(".unread"); badge.hidden = true; badge.textContent = ""; }
    $("peer-name").textContent = li ? li.querySelector(".name").textContent : peer;
    $("peer-profile").href = `/profile/${encodeURIComponent(peer)}`;
    showBlocked(peer);
    $("messages").replaceChildren();
    $("empty").hidden = true;
    $("conversation").hidden = false;
    const query = around ? `around=${encodeURIComponent(around)}&limit=50` : "limit=50";
    const page = await api("GET", `/conversations/${encodeURIComponent(peer)}/messages?${query}`);
    page.messages.forEach((m) => renderMessage(m));
    state.oldestCursor = page.next_cursor;
    state.newerCursor = page.newer_cursor;
    $("load-older").hidden = !page.next_cursor;
    if (around) {
      const target = messageItem(around);
      if (target) { target.classList.add("found"); target.scrollIntoView({ block: "center" }); }
    } else {
      scrollToEnd();
    }
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

  // --- live events ------------------------------------------------------------------------

  on("message", (event) => {
    const m = event.message;
    if (m.conversation === state.peer) { renderMessage(m); scrollToEnd(); markReadSoon(); }
    else if (m.direction === "in") {
      const li = ensureUserItem(m.conversation);
      const badge = li.querySelector(".unread");
      badge.hidden = false;
      badge.textContent = String((+badge.textContent || 0) + 1);
    }
  });
  on("message_state", (event) => { if (event.conversation === state.peer) setMessageState(event.id, event.state, event.error); });
  on("presence", (event) => { if (event.username !== me) setPresence(ensureUserItem(event.username), event); });
  on("directory", () => loadUsers());
  on("resync", () => { loadUsers(); if (state.peer) openConversation(state.peer); });
  on("poll", async () => {
    await loadUsers();
    if (state.peer) {
      const page = await api("GET", `/conversations/${encodeURIComponent(state.peer)}/messages?limit=50`);
      page.messages.forEach((m) => renderMessage(m));
    }
  });
  on("jump", (event) => { $("search-results").hidden = true; openConversation(event.conversation, { around: event.id }); });

  // --- wiring -----------------------------------------------------------------------------

  $("users").addEventListener("click", (event) => {
    const li = event.target.closest("li.user");
    if (li) openConversation(li.dataset.username);
  });
  $("send-form").addEventListener("submit", sendMessage);
  $("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("send-form").requestSubmit(); }
  });
  $("load-older").addEventListener("click", loadOlder);
  $("block-toggle").addEventListener("click", async () => {
    const peer = state.peer;
    const blocked = state.blocked.has(peer);
    await api(blocked ? "DELETE" : "PUT", `/blocks/${encodeURIComponent(peer)}`);
    if (blocked) state.blocked.delete(peer); else state.blocked.add(peer);
    showBlocked(peer);
  });

  loadUsers().then(() => {
    // "#bob" opens a conversation; "#bob/<message id>" opens it at that message.
    const [peer, id] = decodeURIComponent(window.location.hash.slice(1)).split("/");
    if (peer) openConversation(peer, { around: id || null });
  });
})();
