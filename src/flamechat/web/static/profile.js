"use strict";
(() => {
  const { api, on, $ } = flame;
  const username = document.querySelector("main.profile").dataset.username;
  function failed(what, exc) {
    $("profile-error").textContent = `${what}: ${exc.message}`;
    $("profile-error").hidden = false;
  }
  const form = $("profile-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const note = $("profile-message");
      note.hidden = true;
      note.classList.remove("error");
      const fields = {};
      for (const name of ["display_name", "title", "department", "location", "about"]) fields[name] = $(`edit-${name}`).value;
      let saved;
      try {
        saved = await api("PUT", "/me/profile", fields);
      } catch (exc) {
        note.textContent = `Not saved: ${exc.message}`;
        note.classList.add("error");
        note.hidden = false;
        return;
      }
      $("profile-name").textContent = saved.display_name;
      $("profile-title").textContent = saved.title;
      $("profile-department").textContent = saved.department;
      $("profile-location").textContent = saved.location;
      $("profile-about").textContent = saved.about;
      note.textContent = "Saved.";
      const file = $("edit-avatar").files[0];
      if (file) {
        // The details are saved by now: a picture the node refuses must not hide that.
        try {
          saved = await api("PUT", "/me/avatar", file, { raw: true, contentType: file.type || "application/octet-stream" });
          $("edit-avatar").value = "";
          const img = document.createElement("img");
          img.id = "avatar";
          img.className = "avatar";
          img.alt = "";
          img.src = `/api/v1/users/${encodeURIComponent(username)}/avatar?v=${saved.avatar_sha256}`;
          $("avatar").replaceWith(img);
        } catch (exc) {
          note.textContent = `Your details are saved, but not the picture: ${exc.message}`;
          note.classList.add("error");
        }
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
        // not_found: confirmed already elsewhere
        if (exc.code !== "not_found") { failed("Not confirmed", exc); return; }
      }
      $("profile-error").hidden = true;
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
        failed(verified ? "Still marked as verified" : "Not marked as verified", exc);
        return;
      }
      $("profile-error").hidden = true;
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
      try {
        await api(blocked ? "DELETE" : "PUT", `/blocks/${encodeURIComponent(username)}`);
      } catch (exc) {
        failed(blocked ? "Not unblocked" : "Not blocked", exc);
        return;
      }
      $("profile-error").hidden = true;
      block.dataset.blocked = blocked ? "false" : "true";
      block.textContent = blocked ? "Block" : "Unblock";
    });
  }
})();
