"use strict";
(() => {
  const { api, on, $ } = flame;
  const username = document.querySelector("main.profile").dataset.username;
  const form = $("profile-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const note = $("profile-message");
      note.hidden = true;
      try {
        const fields = {};
        for (const name of ["display_name", "title", "department", "location", "about"]) fields[name] = $(`edit-${name}`).value;
        let saved = await api("PUT", "/me/profile", fields);
        const file = $("edit-avatar").files[0];
        if (file) saved = await api("PUT", "/me/avatar", file, { raw: true, contentType: file.type || "application/octet-stream" });
        $("profile-name").textContent = saved.display_name;
        $("profile-title").textContent = saved.title;
        $("profile-department").textContent = saved.department;
        $("profile-location").textContent = saved.location;
        $("profile-about").textContent = saved.about;
        if (saved.avatar_sha256) {
          const img = document.createElement("img");
          img.id = "avatar";
          img.className = "avatar";
          img.alt = "";
          img.src = `/api/v1/users/${encodeURIComponent(username)}/avatar?v=${saved.avatar_sha256}`;
          $("avatar").replaceWith(img);
        }
        note.textContent = "Saved.";
      } catch (exc) {
        note.textContent = exc.message;
      }
      note.hidden = false;
    });
  }
  on("presence", (event) => {
    if (event.username !== username || !$("profile-dot")) return;
    const status = event.online ? event.status || "online" : "offline";
    $("profile-dot").className = `dot ${status}`;
    const label = status.charAt(0).toUpperCase() + status.slice(1);
    $("profile-status").textContent = [label, event.online ? event.status_text : ""].filter(Boolean).join(" · ");
    if (event.display_name) $("profile-name").textContent = event.display_name;
  });
  const confirm = $("safety-confirm");
  if (confirm) {
    confirm.addEventListener("click", async () => {
      try {
        await api("POST", `/users/${encodeURIComponent(username)}/keys/confirm`, {});
      } catch (exc) {
        if (exc.code !== "not_found") return; // not_found: confirmed already elsewhere
      }
      $("safety-changed").replaceChildren(Object.assign(document.createElement("p"), {
        id: "safety-confirmed", textContent: "Confirmed: you can write to them again.",
      }));
    });
  }
  const toggle = $("verify-toggle");
  if (toggle) {
    toggle.addEventListener("click", async () => {
      const verified = toggle.dataset.verified === "true";
      const path = `/users/${encodeURIComponent(username)}/verified`;
      try {
        if (verified) await api("DELETE", path);
        else await api("PUT", path, { safety_number: $("safety-number").textContent.trim() });
      } catch (exc) {
        toggle.title = exc.message;
        return;
      }
      toggle.dataset.verified = verified ? "false" : "true";
      toggle.textContent = verified ? "We compared them: mark as verified" : "Unmark as verified";
      $("verified-mark").hidden = verified;
      const changed = $("safety-changed");
      if (!verified && changed) changed.hidden = true; // verifying confirms the change
    });
  }
  const block = $("profile-block");
  if (block) {
    block.addEventListener("click", async () => {
      const blocked = block.dataset.blocked === "true";
      await api(blocked ? "DELETE" : "PUT", `/blocks/${encodeURIComponent(username)}`);
      block.dataset.blocked = blocked ? "false" : "true";
      block.textContent = blocked ? "Block" : "Unblock";
    });
  }
})();
