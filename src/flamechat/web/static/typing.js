"use strict";
// "Dave is typing…": told to the person written to while the box has text in it, and
// shown under their conversation until the message comes or the notice runs out.
// The node decides whether a notice goes at all (not while appearing offline, not to
// someone blocked) and bounds how often; this page asks at most every few seconds.

(() => {
  const { on, api, $ } = flame;
  const ASK_EVERY_MS = 3000;
  const line = $("peer-typing");
  const input = $("message-input");
  if (!line || !input) return;

  let asked = { peer: null, at: 0 };
  input.addEventListener("input", () => {
    const peer = flame.chat.peer();
    if (!peer || !input.value.trim() || input.disabled) return;
    const now = Date.now();
    if (asked.peer === peer && now - asked.at < ASK_EVERY_MS) return;
    asked = { peer, at: now };
    api("POST", `/conversations/${encodeURIComponent(peer)}/typing`).catch(() => {});  // a hint: lost is fine
  });

  let shownFor = null;
  let timer = null;
  function clear() {
    shownFor = null;
    line.textContent = "";
    if (timer) { clearTimeout(timer); timer = null; }
  }

  on("typing", (event) => {
    if (event.username !== flame.chat.peer()) return;
    shownFor = event.username;
    line.textContent = `${flame.chat.displayName(event.username)} is typing…`;
    if (timer) clearTimeout(timer);
    timer = setTimeout(clear, Math.min(Number(event.for_ms) || 6000, 30000));
  });
  on("message", (event) => {
    const m = event.message;
    if (m.direction === "in" && m.conversation === shownFor) clear();  // what they typed is here
    // Sent (the other side cleared its line): what is typed next is news at once.
    if (m.direction === "out" && m.conversation === asked.peer) asked = { peer: null, at: 0 };
  });
  // Another conversation opened (or none): the line was about someone else.
  new MutationObserver(() => { if (shownFor && shownFor !== flame.chat.peer()) clear(); })
    .observe($("conversation"), { attributes: true, attributeFilter: ["data-peer", "hidden"] });
})();
