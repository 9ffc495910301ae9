"use strict";
(() => {
  const { api, $ } = flame;
  $("blocked-list").addEventListener("click", async (event) => {
    const button = event.target.closest("button.unblock");
    if (!button) return;
    const li = button.closest("li");
    try {
      await api("DELETE", `/blocks/${encodeURIComponent(li.dataset.username)}`);
    } catch (exc) {
      $("blocks-error").textContent = `@${li.dataset.username} is still blocked: ${exc.message}`;
      $("blocks-error").hidden = false;
      return;
    }
    $("blocks-error").hidden = true;
    li.remove();
    if (!$("blocked-list").children.length) {
      $("blocked-list").append(Object.assign(document.createElement("li"), { className: "muted empty", textContent: "You have not blocked anyone." }));
    }
  });
})();
