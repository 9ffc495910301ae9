"use strict";
// Shared by every signed-in page: API calls, the live event stream (which also
// keeps the user "online" while a tab is open), the header (status, search),
// idle auto-away. User text is only ever set through textContent.

const flame = (() => {
  const me = document.querySelector('meta[name="me"]').content;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const handlers = {};
  const $ = (id) => document.getElementById(id);

  async function api(method, path, body, { raw = false, contentType } = {}) {
    const headers = { "X-CSRF-Token": csrf };
    let payload;
    if (raw) { payload = body; if (contentType) headers["Content-Type"] = contentType; }
    else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
    const response = await fetch(`/api/v1${path}`, { method, headers, body: payload });
    if (response.status === 401) { window.location.assign("/login"); throw new Error("logged out"); }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const error = new Error((data && data.error && data.error.message) || `HTTP ${response.status}`);
      error.code = data && data.error && data.error.code;
      throw error;
    }
    return data;
  }

  function on(type, handler) { (handlers[type] = handlers[type] || []).push(handler); }
  function emit(event) { (handlers[event.type] || []).forEach((h) => h(event)); }

  // --- live events: SSE, polling as the fallback -----------------------------------
  let polling = null;
  function startPolling() {
    if (polling) return;
    polling = setInterval(() => emit({ type: "poll" }), 3000);
  }
  function connect() {
    if (!("EventSource" in window)) { startPolling(); return; }
    const source = new EventSource("/api/v1/events");
    for (const type of ["message", "message_state", "presence", "directory", "resync"]) {
      source.addEventListener(type, (e) => emit(JSON.parse(e.data)));
    }
    source.addEventListener("open", () => {
      if (polling) { clearInterval(polling); polling = null; }
      document.body.dataset.live = "sse";
    });
    source.addEventListener("error", () => { document.body.dataset.live = "polling"; startPolling(); });
  }
  on("directory", (event) => { $("directory-banner").hidden = event.status !== "offline"; });

  // --- status: chosen, and automatic away after idling -------------------------------
  const select = $("status-select");
  const statusText = $("status-text");
  let autoAway = false;
  function showMyDot(status) { $("my-dot").className = `dot ${status === "invisible" ? "offline" : status}`; }
  async function saveStatus(status) {
    const saved = await api("PUT", "/me/status", { status, status_text: statusText.value });
    select.value = saved.status;
    showMyDot(saved.status);
  }
  select.addEventListener("change", () => { autoAway = false; saveStatus(select.value); });
  statusText.addEventListener("change", () => saveStatus(select.value));
  statusText.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); statusText.blur(); } });

  const idleLimit = Number(document.querySelector("header.top").dataset.idleAway || 300) * 1000;
  let lastActive = Date.now();
  function activity() {
    lastActive = Date.now();
    if (autoAway) { autoAway = false; saveStatus("online"); }
  }
  for (const type of ["mousemove", "keydown", "pointerdown", "focus", "scroll"]) {
    window.addEventListener(type, activity, { passive: true });
  }
  setInterval(() => {
    if (!autoAway && select.value === "online" && Date.now() - lastActive >= idleLimit) {
      autoAway = true;
      saveStatus("away");
    }
  }, Math.min(5000, Math.max(250, idleLimit / 4)));

  // --- search -------------------------------------------------------------------------
  function dayStart(value) { return value ? new Date(`${value}T00:00:00`).getTime() : null; }
  function highlighted(snippet) {
    // The server marks matches with \u0002 … \u0003; build <mark> nodes from that, never HTML.
    const fragment = document.createDocumentFragment();
    snippet.split("\u0002").forEach((part, index) => {
      if (index === 0) { fragment.append(part); return; }
      const [hit, ...rest] = part.split("\u0003");
      const mark = document.createElement("mark");
      mark.textContent = hit;
      fragment.append(mark, rest.join(""));
    });
    return fragment;
  }
  async function runSearch() {
    const q = $("search-input").value.trim();
    if (!q) return;
    const params = new URLSearchParams({ q });
    const peer = $("search-peer").value.trim().toLowerCase();
    if (peer) params.set("peer", peer);
    const since = dayStart($("search-since").value);
    const until = dayStart($("search-until").value);
    if (since !== null) params.set("since", String(since));
    if (until !== null) params.set("until", String(until + 86400000));
    const results = await api("GET", `/search?${params}`);
    const people = $("people-results");
    people.replaceChildren();
    for (const person of results.people) {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = `/profile/${encodeURIComponent(person.username)}`;
      link.textContent = person.display_name;
      const detail = document.createElement("span");
      detail.className = "muted";
      detail.textContent = ` @${person.username} ${[person.title, person.department].filter(Boolean).join(" · ")}`;
      li.append(link, detail);
      people.appendChild(li);
    }
    if (!results.people.length) people.append(Object.assign(document.createElement("li"), { className: "muted", textContent: "No one matches." }));
    const found = $("message-results");
    found.replaceChildren();
    for (const hit of results.messages) {
      const li = document.createElement("li");
      li.className = "hit";
      li.dataset.id = hit.message.id;
      li.dataset.conversation = hit.message.conversation;
      const who = document.createElement("strong");
      who.textContent = `${hit.message.sender} → ${hit.message.recipient}`;
      const when = document.createElement("time");
      when.textContent = ` ${new Date(hit.message.sent_at).toLocaleString()} `;
      const text = document.createElement("span");
      text.className = "snippet";
      text.appendChild(highlighted(hit.snippet));
      li.append(who, when, text);
      li.addEventListener("click", () => emit({ type: "jump", conversation: hit.message.conversation, id: hit.message.id }));
      found.appendChild(li);
    }
    if (!results.messages.length) found.append(Object.assign(document.createElement("li"), { className: "muted", textContent: "No messages match." }));
    $("search-results").hidden = false;
  }
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); runSearch().catch(() => {}); });
  for (const id of ["search-peer", "search-since", "search-until"]) $(id).addEventListener("change", () => runSearch().catch(() => {}));
  $("search-close").addEventListener("click", () => { $("search-results").hidden = true; });
  // Outside the main page a jump goes to the main page, which opens the message.
  on("jump", (event) => {
    if (!document.getElementById("messages")) {
      window.location.assign(`/#${encodeURIComponent(event.conversation)}/${encodeURIComponent(event.id)}`);
    }
  });

  $("logout").addEventListener("click", async () => {
    try { await api("DELETE", "/sessions/current"); } finally { window.location.assign("/login"); }
  });

  connect();
  return { me, api, on, emit, $ };
})();
