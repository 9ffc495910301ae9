"use strict";
// What can be done with a message: reply to it (the composer quotes it), edit one's own
// text message (in place: Enter saves, Escape cancels), delete one's own for everyone,
// and delete any from one's own history. The node sends the change to the other side, sealed; what
// comes back live ("message_changed", "message_removed") is drawn the same way in
// every tab. Texts go through the server's sanitised HTML or textContent only.

(() => {
  const { api, on, $ } = flame;
  const chat = flame.chat;
  let target = null; // the message the delete dialog is about

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function path(li) {
    return `/conversations/${encodeURIComponent(li.dataset.peer)}/messages/${encodeURIComponent(li.dataset.id)}`;
  }

  function mayEdit(li) {
    return li.dataset.direction === "out" && li.dataset.kind === "text" && li.dataset.deleted !== "true"
      && li.dataset.state !== "failed";
  }

  // --- drawing ---------------------------------------------------------------------------

  chat.onRender((li, message) => {
    li.dataset.kind = message.kind || "text";
    li.dataset.deleted = message.deleted ? "true" : "false";
    li.classList.toggle("deleted", Boolean(message.deleted));
    if (message.deleted) {
      const body = li.querySelector(".body");
      body.replaceChildren(el("em", "muted", message.direction === "out"
        ? "You deleted this message" : "This message was deleted"));
    }
    const meta = li.querySelector(".meta");
    let edited = meta.querySelector(".edited");
    if (message.edited_at && !message.deleted) {
      if (!edited) { edited = el("span", "edited muted", "edited"); meta.prepend(edited, " "); }
      edited.title = `Edited ${new Date(message.edited_at).toLocaleString()}`;
    } else if (edited) {
      edited.remove();
    }
    let actions = meta.querySelector(".actions");
    if (!actions) {
      actions = el("span", "actions");
      const reply = el("button", "link reply", "Reply");
      reply.type = "button";
      reply.addEventListener("click", () => chat.replyTo(li));
      const edit = el("button", "link edit", "Edit");
      edit.type = "button";
      edit.addEventListener("click", () => startEditing(li));
      const remove = el("button", "link delete", "Delete");
      remove.type = "button";
      remove.addEventListener("click", () => askDelete(li));
      actions.append(reply, " ", edit, " ", remove);
      meta.append(" ", actions);
    }
    actions.querySelector(".reply").hidden = li.dataset.deleted === "true" || li.dataset.state === "failed";
    actions.querySelector(".reply").setAttribute("aria-label", "Reply to this message");
    actions.querySelector(".edit").hidden = !mayEdit(li);
    actions.querySelector(".edit").setAttribute("aria-label", "Edit this message");
    actions.querySelector(".delete").setAttribute("aria-label", "Delete this message");
  });

  on("message_changed", (event) => {
    chat.updateQuotes(event.message); // replies that quote it show it as it is now
    if (event.message.conversation !== chat.peer()) {
      if (event.message.deleted) chat.loadUsers(); // an unread one that went counts no more
      return;
    }
    const editing = document.querySelector(`#messages li[data-id="${CSS.escape(event.message.id)}"] .edit-form`);
    if (editing && !event.message.deleted) return; // this tab's own editor stays; it saves over it
    chat.renderMessage(event.message);
  });
  on("message_removed", (event) => { if (event.conversation === chat.peer()) chat.removeMessage(event.id); });

  // --- editing ---------------------------------------------------------------------------

  function startEditing(li, done = () => {}) {
    if (li.querySelector(".edit-form")) return;
    const body = li.querySelector(".body");
    const before = [...body.childNodes];
    const form = el("form", "edit-form");
    const input = el("textarea");
    input.setAttribute("aria-label", "Edit message");
    input.rows = Math.min(8, Math.max(2, (li.dataset.text || "").split("\n").length));
    input.value = li.dataset.text || "";
    const save = el("button", "", "Save");
    save.type = "submit";
    const cancel = el("button", "", "Cancel");
    cancel.type = "button";
    const error = el("p", "error");
    error.setAttribute("role", "alert");
    error.hidden = true;
    form.append(input, save, cancel, error);
    body.replaceChildren(form);
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);

    function stop() { body.replaceChildren(...before); done(); }
    cancel.addEventListener("click", stop);
    input.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { e.preventDefault(); stop(); }
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = input.value;
      if (!text.trim()) { error.textContent = "A message cannot be empty; delete it instead."; error.hidden = false; return; }
      if (text === li.dataset.text) { stop(); return; }
      save.disabled = true;
      try {
        const message = await api("PATCH", path(li), { body: text });
        body.replaceChildren(); // the editor goes; the node's answer is drawn in its place
        chat.renderMessage(message);
        done();
      } catch (exc) {
        error.textContent = exc.message;
        error.hidden = false;
        save.disabled = false;
      }
    });
  }

  // Up arrow in an empty message box edits one's last message (as in other chat apps);
  // Escape or saving brings the typing back to the box.
  $("message-input").addEventListener("keydown", (e) => {
    if (e.key !== "ArrowUp" || e.target.value || e.isComposing) return;
    const mine = [...document.querySelectorAll("#messages li.message.out")].filter(mayEdit);
    if (!mine.length) return;
    e.preventDefault();
    const last = mine[mine.length - 1];
    last.scrollIntoView({ block: "nearest" });
    startEditing(last, () => $("message-input").focus());
  });

  // --- deleting --------------------------------------------------------------------------

  function askDelete(li) {
    target = li;
    const everyone = li.dataset.direction === "out" && li.dataset.deleted !== "true";
    $("delete-everyone").hidden = !everyone;
    $("delete-dialog-note").textContent = everyone
      ? `"Delete for everyone" removes it for ${chat.displayName(li.dataset.peer)} too.`
      : "It goes from your history only.";
    $("delete-dialog").returnValue = "cancel";
    $("delete-dialog").showModal();
  }

  $("delete-dialog").addEventListener("close", async () => {
    const li = target;
    target = null;
    const choice = $("delete-dialog").returnValue;
    if (!li || (choice !== "everyone" && choice !== "me")) return;
    try {
      await api("DELETE", `${path(li)}${choice === "everyone" ? "?everyone=true" : ""}`);
      if (choice === "me") chat.removeMessage(li.dataset.id);
    } catch (exc) {
      $("send-error").textContent = exc.message;
      $("send-error").hidden = false;
    }
  });
})();
