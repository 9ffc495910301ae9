"use strict";
// The main page: people list, conversation, live feed. Shared plumbing is in common.js.
// Message bodies arrive as sanitised HTML from the server (Markdown subset → nh3);
// everything else a user wrote is set through textContent.
//
// Other scripts extend the conversation through `flame.chat` (defined at the end):
// `onRender(fn)` is called as fn(li, message) each time a message is drawn or redrawn,
// `renderMessage(message)` draws one, `peer()` names the open conversation,
// `displayName(username)` is the name the people list shows.

(() => {
  const { me, api, on, emit, $, uuid4 } = flame;
  const state = {
    peer: null, oldestCursor: null, opening: 0, blocked: new Set(), presence: new Map(),
    keysChanged: new Map(), // username → when their keys changed, until confirmed (ms)
    verified: new Set(), // users whose safety number was compared, keys unchanged since
    keyless: new Set(), // users who never signed in: what we write them waits, nothing to verify
    replyTo: null, // {id, sender, text}: the message the next one sent answers
  };
  const renderHooks = [];

  // --- people ---------------------------------------------------------------------------

  const STATUS_LABEL = { online: "Online", away: "Away", busy: "Busy", offline: "Offline" };

  function userItem(username) {
    return document.querySelector(`#users li[data-username="${CSS.escape(username)}"]`);
  }

  function shownStatus(user) { return user.online ? user.status || "online" : "offline"; }

  function setPresence(li, user) {
    const status = shownStatus(user);
    const dot = li.querySelector(".dot");
    dot.className = `dot ${status}`;
    dot.title = STATUS_LABEL[status] || status;
    dot.setAttribute("aria-label", dot.title);
    li.dataset.online = user.online ? "true" : "false";
    li.dataset.status = status;
    li.querySelector(".status-text").textContent = user.online ? user.status_text || "" : "";
    if (user.display_name) li.querySelector(".name").textContent = user.display_name;
    state.presence.set(li.dataset.username, { ...user, status });
    if (li.dataset.username === state.peer) showPeer();
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
    for (const cls of ["dot offline", "name", "handle muted", "unread"]) {
      const span = document.createElement("span");
      span.className = cls;
      button.appendChild(span);
    }
    button.querySelector(".dot").setAttribute("role", "img");
    button.querySelector(".unread").hidden = true;
    button.querySelector(".name").textContent = username;
    button.querySelector(".handle").textContent = `@${username}`;
    const text = document.createElement("span");
    text.className = "status-text muted";
    li.append(button, text);
    $("users").appendChild(li);
    return li;
  }

  // A list is the node's view when it was asked for; a presence event that came after the
  // asking is as new or newer. So a list answered late keeps such a person as the event
  // showed them (bob who just logged out is not shown online again), and a list asked
  // for before the one shown already is dropped.
  let presenceEvents = 0;
  const presenceSeenAt = new Map(); // username -> presenceEvents at their last event
  let listsAsked = 0;
  let listShown = 0;

  function renderUsers(list, asked) {
    if (list.users.some((user) => user.username !== me)) document.querySelectorAll("#users li.none").forEach((li) => li.remove());
    for (const user of list.users) {
      if (user.username === me) continue;
      const li = ensureUserItem(user.username);
      if (!((presenceSeenAt.get(user.username) || 0) > asked)) setPresence(li, user);
      if (user.blocked) state.blocked.add(user.username); else state.blocked.delete(user.username);
      if (user.verified) state.verified.add(user.username); else state.verified.delete(user.username);
      if (user.has_keys === false) state.keyless.add(user.username); else state.keyless.delete(user.username);
      if (user.keys_changed_at) state.keysChanged.set(user.username, user.keys_changed_at);
      else state.keysChanged.delete(user.username);
      if (user.username !== state.peer) setUnread(user.username, user.unread || 0);
    }
    showUnreadTotal();
    const cached = list.source === "cache";
    $("users-source").textContent = cached ? "(cached)" : "";
    $("users").dataset.source = cached ? "cache" : "directory";
    if (state.peer) showBlocked();
  }

  async function loadUsers() {
    const number = ++listsAsked;
    const asked = presenceEvents;
    let list;
    try { list = await api("GET", "/users"); } catch (exc) { return; /* keep what we show */ }
    if (number < listShown) return;
    listShown = number;
    renderUsers(list, asked);
  }

  // Messages that came into the open conversation while this tab was out of sight: unread
  // too, so the tab's title counts them until it is looked at again.
  let unseenHere = 0;
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && unseenHere) { unseenHere = 0; showUnreadTotal(); }
  });

  function showUnreadTotal() {
    let total = 0;
    document.querySelectorAll("#users .unread").forEach((badge) => { total += +badge.textContent || 0; });
    document.title = `${total + unseenHere ? `(${total + unseenHere}) ` : ""}Flame Chat · ${me}`;
    // On a phone the list is out of sight in a conversation: the way back says what waits there.
    $("back-to-people").textContent = total ? `← People (${total} unread)` : "← People";
  }

  function setUnread(username, count) {
    const badge = ensureUserItem(username).querySelector(".unread");
    badge.hidden = !count;
    badge.textContent = count ? String(count) : "";
    if (count) badge.setAttribute("aria-label", `${count} unread`);
  }

  function bumpUnread(username) {
    const badge = ensureUserItem(username).querySelector(".unread");
    badge.hidden = false;
    badge.textContent = String((+badge.textContent || 0) + 1);
    badge.setAttribute("aria-label", `${badge.textContent} unread`);
    showUnreadTotal();
  }

  function clearUnread(username) {
    const li = userItem(username);
    if (!li) return;
    const badge = li.querySelector(".unread");
    badge.hidden = true;
    badge.textContent = "";
    showUnreadTotal();
  }

  // --- messages ---------------------------------------------------------------------------

  const ORDER = ["waiting", "pending", "sent", "delivered", "read"];
  // States the stream told for messages not drawn (yet): opening a conversation
  // empties the list and asks for a page, and a "sent" that comes meanwhile must not be
  // lost to the page's older "pending". Bounded: the oldest are forgotten first.
  const lateStates = new Map();
  // Ticks as people know them, with the word beside them (and in the tooltip).
  const STATE_LABEL = {
    waiting: ["◷", "Waiting for {name} to sign in", "{name} has not signed in yet; it is sent once they do"],
    pending: ["◷", "Sending…", "Waiting to reach their node"],
    sent: ["✓", "Sent", "On their node (or with a relay), not yet opened for them"],
    delivered: ["✓✓", "Delivered", "Delivered to them"],
    read: ["✓✓", "Read", "They have read it"],
    failed: ["!", "Not sent", "Not sent"],
  };

  function messageItem(id) {
    return document.querySelector(`#messages li[data-id="${CSS.escape(id)}"]`);
  }

  function timeLabel(when) {  // the day is on the line above the day's first message
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // --- days: a line naming the day above the first message of each (reader's time zone)

  function dayOf(li) { return new Date(Number(li.dataset.sentAt)).toDateString(); }

  function dayLabel(day) {
    const when = new Date(day);
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (day === today.toDateString()) return "Today";
    if (day === yesterday.toDateString()) return "Yesterday";
    const year = when.getFullYear() === today.getFullYear() ? undefined : "numeric";
    return when.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long", year });
  }

  // Messages arrive in any order (pages of history, the stream, this tab), so after each
  // one the lines are mended where they are wrong rather than drawn again: a line stays
  // only right above the first message of its day, and one is added where it is missing.
  function markDays() {
    const list = $("messages");
    let lastDay = null;
    for (const node of [...list.children]) {
      if (node.classList.contains("day")) {
        const next = node.nextElementSibling;
        const fits = next && next.classList.contains("message") && dayOf(next) === node.dataset.day;
        if (!fits || node.dataset.day === lastDay) node.remove();
        continue;
      }
      if (!node.classList.contains("message")) continue;
      const day = dayOf(node);
      if (day === lastDay) continue;
      lastDay = day;
      let line = node.previousElementSibling;
      if (!(line && line.classList.contains("day") && line.dataset.day === day)) {
        line = Object.assign(document.createElement("li"), { className: "day" });
        line.setAttribute("role", "separator");
        line.dataset.day = day;
        list.insertBefore(line, node);
      }
      line.textContent = dayLabel(day);  // "Today" becomes "Yesterday" past midnight
    }
  }

  // Keep the list in the order the server pages it (sent_at, then seq), wherever a
  // message comes from: a history page, the live stream, or this tab.
  function place(li, message) {
    const list = $("messages");
    const key = Number(message.sent_at);
    const seq = Number.isFinite(message.seq) ? message.seq : Number.MAX_SAFE_INTEGER;
    li.dataset.sentAt = String(key);
    li.dataset.seq = String(seq);
    let before = null;
    for (let node = list.lastElementChild; node; node = node.previousElementSibling) {
      if (node === li || !node.classList.contains("message")) continue;  // a day's line
      const k = Number(node.dataset.sentAt);
      if (k < key || (k === key && Number(node.dataset.seq) <= seq)) break;
      before = node;
    }
    list.insertBefore(li, before);
  }

  function displayName(username) {
    const li = userItem(username);
    return (li && li.querySelector(".name").textContent) || username;
  }

  function showState(li, newState, error) {
    li.classList.remove(...ORDER, "failed");
    li.classList.add(newState);
    li.dataset.state = newState;
    li.title = error || "";
    if (!li.classList.contains("out")) return;
    const name = displayName(li.dataset.peer);
    const [tick, word, detail] = (STATE_LABEL[newState] || ["", newState, newState])
      .map((text) => text.replaceAll("{name}", name));
    const st = li.querySelector(".state");
    st.querySelector(".tick").textContent = tick;
    st.querySelector(".word").textContent = word;
    st.title = error ? `${detail}: ${error}` : detail;
    li.querySelector(".retry").hidden = newState !== "failed";
  }

  // --- replies: the quote above a reply, and the message being replied to --------------

  function quoteText(quote) {
    if (quote.deleted) return "Original message deleted";
    const who = quote.sender === me ? "You" : displayName(quote.sender || "");
    return `${who}: ${quote.text.replace(/\s+/g, " ").trim()}`;
  }

  function showQuote(li, quote) {
    let box = li.querySelector(".quote");
    if (!quote) { if (box) box.remove(); return; }
    if (!box) {
      box = document.createElement("button");
      box.type = "button";
      box.className = "quote";
      box.addEventListener("click", () => showQuoted(box.dataset.id));
      li.insertBefore(box, li.querySelector(".body"));
    }
    drawQuote(box, quote);
  }

  function drawQuote(box, quote) {
    box.dataset.id = quote.id;
    box.dataset.deleted = quote.deleted ? "true" : "false";
    box.textContent = quoteText(quote);
    box.title = quote.deleted ? "" : "Show the message this answers";
    box.disabled = quote.deleted;
  }

  // The quoted message changed (edited, deleted): every quote of it follows.
  function updateQuotes(message) {
    const quote = { id: message.id, sender: message.sender, text: message.body, deleted: Boolean(message.deleted) };
    document.querySelectorAll(`#messages .quote[data-id="${CSS.escape(message.id)}"]`).forEach((box) => drawQuote(box, quote));
  }

  function showQuoted(id) {
    const li = messageItem(id);
    if (!li) { openConversation(state.peer, { around: id }); return; }
    li.scrollIntoView({ block: "center" });
    li.classList.add("found");
    setTimeout(() => li.classList.remove("found"), 2000);
  }

  function replyTo(li) {
    state.replyTo = { id: li.dataset.id, sender: li.dataset.direction === "out" ? me : li.dataset.peer, text: li.dataset.text || "" };
    $("reply-to-name").textContent = li.dataset.direction === "out" ? "yourself" : displayName(li.dataset.peer);
    $("reply-to-text").textContent = (li.dataset.text || "").replace(/\s+/g, " ").trim().slice(0, 120);
    $("reply-bar").hidden = false;
    $("message-input").focus();
  }

  // Unsent text stays with its conversation, in this tab's memory only (never written
  // to the browser's storage: a draft may be as confidential as what is sent).
  const drafts = new Map();
  function keepDraft(next) {
    const input = $("message-input");
    if (state.peer && input.value.trim()) drafts.set(state.peer, input.value);
    else if (state.peer) drafts.delete(state.peer);
    input.value = drafts.get(next) || "";
    drafts.delete(next);
  }

  function cancelReply() {
    state.replyTo = null;
    $("reply-bar").hidden = true;
  }
  $("reply-cancel").addEventListener("click", () => { cancelReply(); $("message-input").focus(); });
  $("message-input").addEventListener("keydown", (e) => { if (e.key === "Escape" && state.replyTo) cancelReply(); });

  // A page of history: its messages drawn, then the day lines mended once for them all.
  function renderPage(messages) {
    messages.forEach((m) => renderMessage(m, { days: false }));
    markDays();
  }

  function renderMessage(message, { days = true } = {}) {
    let li = messageItem(message.id);
    const fresh = !li;
    if (fresh) {
      li = document.createElement("li");
      li.dataset.id = message.id;
      const body = document.createElement("div");
      body.className = "body";
      const meta = document.createElement("span");
      meta.className = "meta";
      const time = document.createElement("time");
      const st = document.createElement("span");
      st.className = "state";
      const tick = document.createElement("span");
      tick.className = "tick";
      tick.setAttribute("aria-hidden", "true");
      const word = document.createElement("span");
      word.className = "word";
      st.append(tick, " ", word);
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "retry";
      retry.textContent = "Retry";
      retry.hidden = true;
      meta.append(time, " ", st, " ", retry);
      const who = document.createElement("span"); // for screen readers: whose message this is
      who.className = "who sr-only";
      li.append(who, body, meta);
    }
    // What this tab drew before the node answered is no state to keep ("pending" would
    // otherwise hide the node's "waiting"); what the stream told while a page of history
    // was on its way is (that page may be older than the news).
    const late = lateStates.get(message.id);
    lateStates.delete(message.id);
    const known = (li.dataset.optimistic ? undefined : li.dataset.state) || late;
    delete li.dataset.optimistic;
    const found = li.classList.contains("found");
    li.className = `message ${message.direction}${found ? " found" : ""}`;
    li.dataset.direction = message.direction;
    li.dataset.peer = message.conversation || state.peer || "";
    li.querySelector(".who").textContent = message.direction === "out" ? "You:" : `${displayName(li.dataset.peer)}:`;
    const body = li.querySelector(".body");
    if (typeof message.html === "string") body.innerHTML = message.html;  // sanitised server-side (nh3)
    else body.textContent = message.body;
    li.dataset.text = message.body;
    if (message.reply_to !== undefined) showQuote(li, message.reply_to); // absent: keep what is drawn
    const when = new Date(message.sent_at);
    const time = li.querySelector("time");
    time.textContent = timeLabel(when);
    time.dateTime = when.toISOString();
    time.title = when.toLocaleString();
    li.querySelector(".state").hidden = message.direction !== "out";
    // A state never moves backwards (a late "sent" after a live "read").
    const next = known && message.state !== "failed" && ORDER.indexOf(message.state) < ORDER.indexOf(known)
      ? known : message.state;
    showState(li, next, message.error);
    // Drawn before the node answered, it was placed by this computer's clock: the node's
    // sent_at (and seq) decide where it goes, whatever that clock says.
    const moved = !fresh && Number.isFinite(message.seq)
      && (li.dataset.sentAt !== String(Number(message.sent_at)) || li.dataset.seq !== String(message.seq));
    if (fresh || moved) {
      place(li, message);
      if (days) markDays();
    }
    $("no-messages").hidden = true;
    renderHooks.forEach((hook) => hook(li, message));
    return li;
  }

  function setMessageState(id, newState, error) {
    const li = messageItem(id);
    if (!li) {
      if (newState === "failed") return; // its error comes with the page
      lateStates.delete(id);
      lateStates.set(id, newState);
      if (lateStates.size > 500) lateStates.delete(lateStates.keys().next().value);
      return;
    }
    if (newState !== "failed" && ORDER.indexOf(newState) < ORDER.indexOf(li.dataset.state)) return;
    showState(li, newState, error);
  }

  let readTimer = null;
  function markReadSoon() {
    if (readTimer) return;
    readTimer = setTimeout(async () => {
      readTimer = null;
      const peer = state.peer;
      if (!peer || document.visibilityState !== "visible") return;
      const unread = document.querySelectorAll("#messages li.message.in.delivered");
      if (!unread.length) return;
      const newest = unread[unread.length - 1];
      try {
        await api("POST", `/conversations/${encodeURIComponent(peer)}/read`, { up_to: newest.dataset.id });
        if (state.peer === peer) unread.forEach((li) => setMessageState(li.dataset.id, "read"));
      } catch (exc) { /* retried at the next message or when the tab is shown again */ }
    }, 300);
  }
  document.addEventListener("visibilitychange", markReadSoon);

  function nearEnd() {
    const list = $("messages");
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }
  // A reader at the latest message stays there while pictures and players load
  // (each makes its message taller after it was scrolled to).
  let pinned = true;
  function scrollToEnd() { const list = $("messages"); list.scrollTop = list.scrollHeight; pinned = true; }
  function keepPinned() { if (pinned && state.peer) scrollToEnd(); }

  // --- the conversation head: who, their status, blocked or not -------------------------

  function showPeer() {
    const peer = state.peer;
    if (!peer) return;
    const li = userItem(peer);
    const seen = state.presence.get(peer);
    $("peer-name").textContent = li ? li.querySelector(".name").textContent : peer;
    const status = seen ? seen.status : "offline";
    const dot = $("peer-dot");
    dot.className = `dot ${status}`;
    dot.title = STATUS_LABEL[status] || status;
    $("peer-status").textContent = [STATUS_LABEL[status] || status, seen && seen.online ? seen.status_text : ""]
      .filter(Boolean).join(" · ");
  }

  function showBlocked() {
    const blocked = state.blocked.has(state.peer);
    const changed = state.keysChanged.get(state.peer);
    $("block-toggle").textContent = blocked ? "Unblock" : "Block";
    $("block-toggle").dataset.blocked = blocked ? "true" : "false";
    $("blocked-note").hidden = !blocked;
    $("keys-note").hidden = !changed;
    const keyless = state.keyless.has(state.peer);
    $("peer-verified").hidden = !state.verified.has(state.peer);
    // No keys yet, so no safety number to compare.
    $("peer-verify").hidden = state.verified.has(state.peer) || keyless;
    $("waiting-note").hidden = !keyless;
    $("waiting-note-name").textContent = displayName(state.peer);
    $("peer-verify").href = `/profile/${encodeURIComponent(state.peer)}#safety`;
    if (changed) {
      const li = userItem(state.peer);
      $("keys-note-name").textContent = li ? li.querySelector(".name").textContent : state.peer;
      $("keys-note-when").textContent = `on ${new Date(changed).toLocaleString()}`;
      $("keys-compare").href = `/profile/${encodeURIComponent(state.peer)}#safety`;
    }
    for (const id of ["message-input", "send-button", "attach-button"]) $(id).disabled = blocked || Boolean(changed);
  }

  async function openConversation(peer, { around = null } = {}) {
    const token = ++state.opening;
    if (peer !== state.peer) {
      cancelReply(); // a reply is to someone in this conversation
      keepDraft(peer); // what was being written to one person is never sent to another
    }
    state.peer = peer;
    const conversation = $("conversation");
    delete conversation.dataset.peer;
    document.querySelectorAll("#users li").forEach((li) => li.classList.toggle("active", li.dataset.username === peer));
    clearUnread(peer);
    $("peer-profile").href = `/profile/${encodeURIComponent(peer)}`;
    showPeer();
    showBlocked();
    $("messages").replaceChildren();
    $("no-messages").hidden = true;
    state.oldestCursor = null;
    $("send-error").hidden = true;
    $("empty").hidden = true;
    conversation.hidden = false;
    document.body.classList.add("in-conversation"); // on a phone: the conversation instead of the list
    const address = `#${encodeURIComponent(peer)}`;
    if (window.location.hash !== address) {
      // From the people list a conversation is a step forward, so the browser's Back (a
      // phone's Back above all) returns to the list; from one conversation to another is not.
      if (window.location.hash) history.replaceState(null, "", address);
      else history.pushState({ fromList: true }, "", address);
    }
    const query = around ? `around=${encodeURIComponent(around)}&limit=50` : "limit=50";
    let page;
    try {
      page = await api("GET", `/conversations/${encodeURIComponent(peer)}/messages?${query}`);
    } catch (exc) {
      if (token !== state.opening) return;
      $("send-error").textContent = `Could not load the conversation: ${exc.message}`;
      $("send-error").hidden = false;
      conversation.dataset.peer = peer;
      return;
    }
    if (token !== state.opening) return;  // another conversation was opened meanwhile
    renderPage(page.messages);
    $("no-messages").hidden = $("messages").children.length > 0;
    state.oldestCursor = page.next_cursor;
    $("load-older").hidden = !page.next_cursor;
    $("jump-latest").hidden = !page.newer_cursor;
    if (around) {
      const target = messageItem(around);
      if (target) {
        document.querySelectorAll("#messages li.found").forEach((li) => li.classList.remove("found"));
        target.classList.add("found");
        target.scrollIntoView({ block: "center" });
        pinned = nearEnd();
      }
    } else {
      scrollToEnd();
    }
    conversation.dataset.peer = peer;
    markReadSoon();
    if (!around && !$("message-input").disabled) $("message-input").focus();
  }

  // Back to the people list (the only way there on a phone, where the two do not fit side by side).
  function closeConversation() {
    state.opening += 1;
    state.peer = null;
    state.oldestCursor = null;
    document.body.classList.remove("in-conversation");
    document.querySelectorAll("#users li.active").forEach((li) => li.classList.remove("active"));
    $("conversation").hidden = true;
    delete $("conversation").dataset.peer;
    $("messages").replaceChildren();
    $("empty").hidden = false;
    if (window.location.hash) history.replaceState(null, "", window.location.pathname);
  }

  let loadingOlder = null;
  function loadOlderOnce() {
    if (!loadingOlder) loadingOlder = loadOlder().catch(() => {}).finally(() => { loadingOlder = null; });
    return loadingOlder;
  }

  async function loadOlder() {
    if (!state.oldestCursor || !state.peer) return;
    const peer = state.peer;
    const list = $("messages");
    const fromEnd = list.scrollHeight - list.scrollTop;
    const page = await api("GET", `/conversations/${encodeURIComponent(peer)}/messages?limit=50&before=${state.oldestCursor}`);
    if (state.peer !== peer) return;
    renderPage(page.messages);
    list.scrollTop = list.scrollHeight - fromEnd;  // keep what the reader was looking at in place
    state.oldestCursor = page.next_cursor;
    $("load-older").hidden = !page.next_cursor;
  }

  async function post(peer, id, text, replyId = null) {
    $("send-error").hidden = true;
    try {
      const payload = replyId ? { id, body: text, reply_to: replyId } : { id, body: text };
      const saved = await api("POST", `/conversations/${encodeURIComponent(peer)}/messages`, payload);
      if (saved.state === "waiting" && !state.keyless.has(peer)) {
        state.keyless.add(peer);
        if (state.peer === peer) showBlocked();
      }
      if (state.peer === peer) renderMessage(saved);
    } catch (exc) {
      if (exc.code === "keys_changed") state.keysChanged.set(peer, Date.now());
      if (state.peer !== peer) return;
      if (exc.code === "keys_changed") showBlocked();
      if (exc.code === "message_too_large") {
        // No retry can send it: the text goes back in the box to be shortened, or sent as a file.
        const li = messageItem(id);
        if (li) li.remove();
        markDays();
        if (!$("message-input").value) $("message-input").value = text;
        $("send-error").textContent = `${exc.message}: shorten it, or send it as a file with Attach`;
        $("send-error").hidden = false;
        return;
      }
      setMessageState(id, "failed", exc.message);
      $("send-error").textContent = exc.message;
      $("send-error").hidden = false;
    }
  }

  async function sendMessage(event) {
    event.preventDefault();
    const input = $("message-input");
    const text = input.value;
    if (!text.trim() || !state.peer || input.disabled) return;
    const id = uuid4();
    const peer = state.peer;
    const quote = state.replyTo;
    const olderPage = !$("jump-latest").hidden; // reading an older page (a search hit)
    renderMessage({
      id, direction: "out", state: "pending", body: text, sent_at: Date.now(), conversation: peer,
      reply_to: quote ? { ...quote, deleted: false } : null,
    }).dataset.optimistic = "true";
    scrollToEnd();
    input.value = "";
    cancelReply();
    await post(peer, id, text, quote ? quote.id : null);
    // The reply goes after the latest messages, not after a gap: show those with it.
    const mine = messageItem(id);
    if (olderPage && state.peer === peer && mine && mine.dataset.state !== "failed") openConversation(peer);
  }

  // --- live events ------------------------------------------------------------------------

  on("message", (event) => {
    const m = event.message;
    if (m.conversation === state.peer && $("conversation").dataset.peer === state.peer) {
      const follow = m.direction === "out" || nearEnd();
      if (m.direction === "in" && document.visibilityState !== "visible" && !messageItem(m.id)) {
        unseenHere += 1;
        showUnreadTotal();
      }
      renderMessage(m);
      if (follow) scrollToEnd();
      markReadSoon();
    } else if (m.conversation === state.peer) {
      renderMessage(m);  // the page is still loading: keep it, in order
    } else if (m.direction === "in") {
      bumpUnread(m.conversation);
    }
  });
  on("message_state", (event) => {
    if (event.state !== "waiting" && event.state !== "failed" && state.keyless.delete(event.conversation)) {
      if (event.conversation === state.peer) showBlocked(); // sealed to their keys: they signed in
    }
    if (event.conversation === state.peer) setMessageState(event.id, event.state, event.error);
  });
  on("presence", (event) => {
    if (event.username === me) return;
    presenceSeenAt.set(event.username, ++presenceEvents);
    setPresence(ensureUserItem(event.username), event);
  });
  on("directory", () => loadUsers());
  on("resync", () => { loadUsers(); if (state.peer) openConversation(state.peer); });
  on("poll", async () => {
    await loadUsers();
    const peer = state.peer;
    if (peer) {
      try {
        const page = await api("GET", `/conversations/${encodeURIComponent(peer)}/messages?limit=50`);
        if (state.peer === peer) { renderPage(page.messages); markReadSoon(); }
      } catch (exc) { /* the next poll tries again */ }
    }
  });
  on("jump", (event) => { $("search-results").hidden = true; openConversation(event.conversation, { around: event.id }); });
  on("keys_changed", (event) => {
    state.keysChanged.set(event.username, Date.now());
    state.verified.delete(event.username); // verified keys are no longer the keys
    if (state.peer === event.username) showBlocked();
    loadUsers(); // the exact time, from the node
  });
  on("blocked", (event) => {
    if (event.blocked) state.blocked.add(event.username); else state.blocked.delete(event.username);
    if (state.peer === event.username) showBlocked();
  });

  // --- wiring -----------------------------------------------------------------------------

  $("users").addEventListener("click", (event) => {
    const li = event.target.closest("li.user");
    if (li) openConversation(li.dataset.username);
  });
  $("send-form").addEventListener("submit", sendMessage);
  $("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("send-form").requestSubmit();
    }
  });
  $("messages").addEventListener("click", (event) => {
    const retry = event.target.closest("button.retry");
    if (!retry || !state.peer) return;
    const li = retry.closest("li.message");
    showState(li, "pending");
    li.dataset.optimistic = "true";
    post(state.peer, li.dataset.id, li.dataset.text);
  });
  $("load-older").addEventListener("click", loadOlderOnce);
  // Only the reader's own scrolling up unpins: a scroll event that comes after a
  // picture made the list taller (its scrollTop unchanged, so no longer "near the
  // end") is no sign that the reader left the latest message.
  let lastTop = 0;
  $("messages").addEventListener("scroll", () => {
    const list = $("messages");
    if (list.scrollTop < lastTop - 1) pinned = nearEnd();
    else if (nearEnd()) pinned = true;
    lastTop = list.scrollTop;
    // Scrolled up to the top of what is loaded: the page before it comes by itself.
    if (list.scrollTop < 150 && state.oldestCursor && $("conversation").dataset.peer === state.peer) loadOlderOnce();
  }, { passive: true });
  $("messages").addEventListener("load", keepPinned, true); // an image (load does not bubble: capture)
  $("messages").addEventListener("loadedmetadata", keepPinned, true); // audio and video
  function backToPeople() {
    const peer = state.peer;
    closeConversation();
    const button = peer && userItem(peer) && userItem(peer).querySelector("button.open-conversation");
    if (button) button.focus(); // keyboard users land where they left the list
  }
  $("back-to-people").addEventListener("click", () => {
    // The step forward from the list is taken back, as the browser's Back would (its
    // hashchange closes the conversation); otherwise there is no step to take back.
    if (history.state && history.state.fromList) history.back();
    else backToPeople();
  });
  $("jump-latest").addEventListener("click", () => { if (state.peer) openConversation(state.peer); });
  $("block-toggle").addEventListener("click", async () => {
    const peer = state.peer;
    const blocked = state.blocked.has(peer);
    try {
      await api(blocked ? "DELETE" : "PUT", `/blocks/${encodeURIComponent(peer)}`);
    } catch (exc) {
      $("send-error").textContent = exc.message;
      $("send-error").hidden = false;
      return;
    }
    emit({ type: "blocked", username: peer, blocked: !blocked });
  });
  $("keys-confirm").addEventListener("click", async () => {
    const peer = state.peer;
    try {
      await api("POST", `/users/${encodeURIComponent(peer)}/keys/confirm`, {});
    } catch (exc) {
      if (exc.code !== "not_found") { // not_found: confirmed already, in another tab
        $("send-error").textContent = exc.message;
        $("send-error").hidden = false;
        return;
      }
    }
    state.keysChanged.delete(peer);
    if (state.peer === peer) { showBlocked(); $("message-input").focus(); }
  });
  window.addEventListener("hashchange", () => {
    const [peer, id] = decodeURIComponent(window.location.hash.slice(1)).split("/");
    if (peer && (peer !== state.peer || id)) openConversation(peer, { around: id || null });
    else if (!peer && state.peer) backToPeople(); // the browser's Back to the bare page
  });

  // The server rendered the list; remember what it showed so the head can use it.
  document.querySelectorAll("#users li.user").forEach((li) => {
    state.presence.set(li.dataset.username, {
      online: li.dataset.online === "true",
      status: li.dataset.status,
      status_text: li.querySelector(".status-text").textContent,
    });
    if (li.dataset.blocked === "true") state.blocked.add(li.dataset.username);
    if (li.dataset.verified === "true") state.verified.add(li.dataset.username);
    if (li.dataset.hasKeys === "false") state.keyless.add(li.dataset.username);
    if (li.dataset.keysChanged) state.keysChanged.set(li.dataset.username, Number(li.dataset.keysChanged));
  });

  // A message taken out of this history (deleted for me, here or in another tab).
  function removeMessage(id) {
    const li = messageItem(id);
    if (!li) return;
    li.remove();
    markDays();
    $("no-messages").hidden = Boolean(document.querySelector("#messages li.message"));
  }

  flame.chat = {
    peer: () => state.peer,
    displayName,
    renderMessage,
    removeMessage,
    replyTo,
    updateQuotes,
    setMessageState,
    loadUsers,
    onRender: (hook) => { renderHooks.push(hook); },
  };

  // "#bob" opens a conversation; "#bob/<message id>" opens it at that message: the
  // address the page was opened at, unless a conversation was opened meanwhile (a
  // link followed while the people list was loading) — that one is what was asked for.
  const [startPeer, startId] = decodeURIComponent(window.location.hash.slice(1)).split("/");
  const openedAtStart = state.opening;
  loadUsers().then(() => {
    if (startPeer && state.opening === openedAtStart) openConversation(startPeer, { around: startId || null });
  });
})();
