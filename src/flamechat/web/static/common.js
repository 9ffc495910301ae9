"use strict";
// Shared by every signed-in page: API calls, the live event stream (which also
// keeps the user "online" while a tab is open), the header (status, search),
// idle auto-away. User text is only ever set through textContent.

const flame = (() => {
  const me = document.querySelector('meta[name="me"]').content;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const handlers = {};
  const $ = (id) => document.getElementById(id);

  // The banner says so while the node does not answer at all (polls, heartbeats and
  // whatever the user does all go through api()); any answer, or the stream, clears it.
  function reachable(yes) { $("connection-banner").hidden = yes; }
  // The page is being closed or left (logout included): its stream's end is no outage
  // to poll through, and a 401 meanwhile is no reason for a second navigation.
  let leaving = false;

  async function api(method, path, body, { raw = false, contentType } = {}) {
    const headers = { "X-CSRF-Token": csrf };
    let payload;
    if (raw) { payload = body; if (contentType) headers["Content-Type"] = contentType; }
    else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
    let response;
    try {
      response = await fetch(`/api/v1${path}`, { method, headers, body: payload });
    } catch (exc) {  // no answer at all: say so in words, not the browser's "Failed to fetch"
      reachable(false);
      const error = new Error("Your node cannot be reached; check your connection and try again");
      error.code = "unreachable";
      throw error;
    }
    reachable(true);
    if (response.status === 401) { if (!leaving) window.location.assign("/login"); throw new Error("logged out"); }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (response.status === 403 && data && data.error && data.error.code === "csrf_failed") {
      // This page's session is gone: someone logged out (and maybe in as someone else)
      // in another tab. Show what the browser's session is now instead.
      if (!leaving) sessionChanged();
      throw new Error("signed out in another tab");
    }
    if (!response.ok) {
      const text = (data && data.error && data.error.message)
        || `Your node could not do that just now (error ${response.status}); try again in a moment`;
      const error = new Error(text.charAt(0).toUpperCase() + text.slice(1));  // a sentence for people
      error.code = data && data.error && data.error.code;
      throw error;
    }
    return data;
  }

  // Logging out (or in) in one tab changes the session every tab of this node uses:
  // the others follow at once rather than show one person's page on another's session.
  const sessionKey = "flame:session";
  function sessionChanged() { window.location.assign("/"); }
  window.addEventListener("storage", (e) => { if (e.key === sessionKey) sessionChanged(); });

  function on(type, handler) { (handlers[type] = handlers[type] || []).push(handler); }
  function emit(event) { (handlers[event.type] || []).forEach((h) => h(event)); }

  // --- live events: SSE, polling as the fallback -----------------------------------
  // This tab counts as open (its user online) while the node hears from it: the
  // stream asks with an "alive" event every few seconds and the tab answers with a
  // heartbeat; a tab that polls sends one on a timer. A tab that vanished without
  // closing (laptop shut, network gone) stops answering and is closed by the node.
  const tab = uuid4();
  let tabTimeout = 45; // seconds; each answer says the node's own
  // via=stream: the beat answers the stream, and opens no polling lease if the stream
  // has just ended (this tab closing while the beat was on its way).
  async function heartbeat(via = "poll") {
    try { tabTimeout = (await api("PUT", `/me/tabs/${tab}?via=${via}`)).timeout || tabTimeout; } catch (exc) { /* next time */ }
  }
  let polling = null;
  let leaseTimer = null;
  // The beat after the first comes within seconds: a lease opened just after this tab's
  // stream ended is on probation at the node until a second beat says the tab lives on.
  async function keepPolledTabOpen(first = false) {
    leaseTimer = null;
    await heartbeat();
    const next = first ? 2000 : Math.max(500, (tabTimeout * 1000) / 3);
    if (polling && !leaseTimer) leaseTimer = setTimeout(keepPolledTabOpen, next);
  }
  function startPolling() {
    if (polling) return;
    polling = setInterval(() => emit({ type: "poll" }), 3000);
    keepPolledTabOpen(true);
  }
  function stopPolling() {
    if (polling) { clearInterval(polling); polling = null; }
    if (leaseTimer) { clearTimeout(leaseTimer); leaseTimer = null; }
  }
  // A polling tab that closes says so (a stream's connection closing says it by itself).
  window.addEventListener("pagehide", () => {
    leaving = true;
    if (!polling) return;
    fetch(`/api/v1/me/tabs/${tab}`, { method: "DELETE", headers: { "X-CSRF-Token": csrf }, keepalive: true }).catch(() => {});
  });
  window.addEventListener("pageshow", (e) => { leaving = false; if (e.persisted && polling) keepPolledTabOpen(); });
  // A stream that drops and comes back may have missed events: "resync" reloads.
  let opened = false;
  let retryIn = 2000;
  let liveSource = null;
  function connect() {
    if (!("EventSource" in window)) { document.body.dataset.live = "polling"; startPolling(); return; }
    const source = new EventSource(`/api/v1/events?tab=${tab}`);
    liveSource = source;
    source.addEventListener("alive", () => { heartbeat("stream"); });
    for (const type of ["message", "message_state", "presence", "directory", "resync", "file", "keys_changed", "typing", "message_changed", "message_removed"]) {
      source.addEventListener(type, (e) => {
        let event;
        try { event = JSON.parse(e.data); } catch (exc) { return; }
        emit(event);
      });
    }
    source.addEventListener("open", () => {
      reachable(true);
      stopPolling();
      document.body.dataset.live = "sse";
      retryIn = 2000;
      if (opened) emit({ type: "resync" });
      opened = true;
    });
    source.addEventListener("error", () => {
      if (leaving) return; // polling now would hold this closing tab open for tab_timeout
      document.body.dataset.live = "polling";
      startPolling();
      // The browser retries a dropped stream by itself, but gives up for good after
      // an error answer (a node restarting behind a proxy): then start a new one.
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, retryIn);
        retryIn = Math.min(retryIn * 2, 30000);
      }
    });
  }
  on("directory", (event) => {
    $("directory-banner").hidden = event.status !== "offline";
    document.body.dataset.directory = event.status;
  });

  // --- status: chosen, and automatic away after idling -------------------------------
  // Several tabs of one person act as one: the last activity, an automatic away and
  // the chosen status are shared through localStorage (and its "storage" event).
  const select = $("status-select");
  const statusText = $("status-text");
  const autoAwayKey = `flame:auto-away:${me}`;
  const activeKey = `flame:last-active:${me}`;
  const statusKey = `flame:status:${me}`;
  const isAutoAway = () => localStorage.getItem(autoAwayKey) === "1";
  function setAutoAway(value) {
    if (value) localStorage.setItem(autoAwayKey, "1"); else localStorage.removeItem(autoAwayKey);
  }
  if (select.value !== "away") setAutoAway(false);
  function showMyDot(status) {
    const shown = status === "invisible" ? "offline" : status;
    $("my-dot").className = `dot ${shown}`;
    document.body.dataset.myStatus = status;
  }
  function showStatus(status, text) {
    select.value = status;
    if (document.activeElement !== statusText) statusText.value = text;
    showMyDot(status);
  }
  // Saves go one at a time, in order, each with the text as it is when it leaves.
  let saving = Promise.resolve();
  function saveStatus(status) {
    saving = saving.then(async () => {
      const text = statusText.value;
      statusText.classList.remove("failed");
      statusText.title = "";
      try {
        const saved = await api("PUT", "/me/status", { status, status_text: text });
        select.value = saved.status;
        if (statusText.value === text) statusText.value = saved.status_text;
        showMyDot(saved.status);
        localStorage.setItem(statusKey, JSON.stringify({ status: saved.status, text: saved.status_text, at: Date.now() }));
      } catch (exc) {
        statusText.classList.add("failed");
        statusText.title = `Not saved: ${exc.message}`;
      }
    });
    return saving;
  }
  window.addEventListener("storage", (e) => {
    if (e.key !== statusKey || !e.newValue) return;
    try { const { status, text } = JSON.parse(e.newValue); showStatus(status, text); } catch (exc) { /* ignore */ }
  });
  showMyDot(select.value);
  select.addEventListener("change", () => { setAutoAway(false); saveStatus(select.value); });
  statusText.addEventListener("change", () => saveStatus(select.value));
  statusText.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); statusText.blur(); } });

  const configured = Number(document.querySelector("header.top").dataset.idleAway);
  const idleLimit = (Number.isFinite(configured) && configured > 0 ? configured : 300) * 1000;
  let lastActive = Date.now();
  let sharedAt = 0;
  function activity() {
    lastActive = Date.now();
    if (lastActive - sharedAt > 1000) { sharedAt = lastActive; localStorage.setItem(activeKey, String(lastActive)); }
    if (isAutoAway()) { setAutoAway(false); saveStatus("online"); }
  }
  for (const type of ["mousemove", "keydown", "pointerdown", "focus", "scroll", "touchstart"]) {
    window.addEventListener(type, activity, { passive: true, capture: true });
  }
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") activity(); });
  setInterval(() => {
    const last = Math.max(lastActive, Number(localStorage.getItem(activeKey)) || 0);
    if (!isAutoAway() && select.value === "online" && Date.now() - last >= idleLimit) {
      setAutoAway(true);
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
  // The panel hangs below the header, whatever pushed the header down (the
  // directory banner) or made it taller (a phone wraps it).
  function showResults() {
    const panel = $("search-results");
    panel.style.top = `${document.querySelector("header.top").getBoundingClientRect().bottom + window.scrollY}px`;
    panel.hidden = false;
  }
  async function runSearch() {
    const q = $("search-input").value.trim();
    if (!q) return;
    const params = new URLSearchParams({ q });
    const peer = $("search-peer").value.trim().replace(/^@/, "").toLowerCase();
    if (peer && !/^[a-z][a-z0-9_.-]{1,31}$/.test(peer)) {  // the node's rule for usernames, said in words
      throw new Error(`“${peer}” is not a username: usernames are letters, digits and . _ -, like “bob” or “anna.lee”`);
    }
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
      li.tabIndex = 0;
      const jump = () => emit({ type: "jump", conversation: hit.message.conversation, id: hit.message.id });
      li.addEventListener("click", jump);
      li.addEventListener("keydown", (e) => { if (e.key === "Enter") jump(); });
      found.appendChild(li);
    }
    if (!results.messages.length) found.append(Object.assign(document.createElement("li"), { className: "muted", textContent: "No messages match." }));
    showResults();
  }
  function searchFailed(exc) {
    $("people-results").replaceChildren();
    $("message-results").replaceChildren(Object.assign(document.createElement("li"), { className: "error", textContent: `Search failed: ${exc.message}` }));
    showResults();
  }
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); runSearch().catch(searchFailed); });
  for (const id of ["search-peer", "search-since", "search-until"]) $(id).addEventListener("change", () => runSearch().catch(searchFailed));
  $("search-close").addEventListener("click", () => { $("search-results").hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("search-results").hidden = true; });
  document.addEventListener("click", (e) => {
    if (!e.target.closest("#search-results, #search-form")) $("search-results").hidden = true;
  });
  // Outside the main page a jump goes to the main page, which opens the message.
  on("jump", (event) => {
    if (!document.getElementById("messages")) {
      window.location.assign(`/#${encodeURIComponent(event.conversation)}/${encodeURIComponent(event.id)}`);
    }
  });

  $("logout").addEventListener("click", async () => {
    leaving = true; // logging out ends this tab's stream: no polling, no second navigation
    stopPolling();
    if (liveSource) liveSource.close();
    try { await api("DELETE", "/sessions/current"); } finally {
      localStorage.setItem(sessionKey, `out ${Date.now()}`);
      window.location.assign("/login");
    }
  });

  connect();
  // Client-chosen ids (messages, uploads): a retried request is the same request.
  function uuid4() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  return { me, api, on, emit, $, uuid4 };
})();
