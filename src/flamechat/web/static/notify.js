"use strict";
// Desktop notifications for messages that arrive out of sight: in another conversation,
// in a hidden tab, or while the window is behind another. They name the sender only:
// a confidential message's text never reaches the system's notification centre or a
// locked screen. Busy means do not disturb. Several tabs of one user show one
// notification per message (they share its tag).

(() => {
  const { on, $ } = flame;
  const offer = $("notify-offer");
  if (!("Notification" in window) || !offer) return;

  function showOffer() { offer.hidden = Notification.permission !== "default"; }
  showOffer();
  offer.querySelector("button").addEventListener("click", async () => {
    try { await Notification.requestPermission(); } catch (exc) { /* refused: nothing to do */ }
    showOffer();
  });

  on("message", (event) => {
    const m = event.message;
    if (m.direction !== "in" || Notification.permission !== "granted") return;
    if ($("status-select").value === "busy") return;
    const inSight = m.conversation === flame.chat.peer() && document.visibilityState === "visible" && document.hasFocus();
    if (inSight) return;
    const note = new Notification(flame.chat.displayName(m.conversation), {
      body: "New message",
      tag: `flame-${m.id}`,
      icon: "/static/flame.svg",
    });
    note.onclick = () => {
      window.focus();
      window.location.hash = `#${encodeURIComponent(m.conversation)}`;  // opens it
      note.close();
    };
  });
})();
