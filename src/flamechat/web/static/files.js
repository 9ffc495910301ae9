"use strict";
// Files in a conversation: pick or drop files, upload them in resumable parts with a
// progress bar and a cancel button each; show received files with their state,
// inline images (thumbnail → full size), audio and video players, and a download
// button with progress. Names and every other user-supplied text go through textContent.

(() => {
  const { api, on, $, uuid4 } = flame;
  const chat = flame.chat;
  const known = new Map(); // message id → the last message object drawn
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  // A page sees a download's progress only by reading the body itself, and without a
  // service worker (or the File System Access API, which is Chromium's alone and asks
  // where to save before anything arrives) whatever it reads stays in the tab's memory
  // until it is handed over whole as a Blob. So only files up to this size are read in
  // the page, for its progress bar; larger ones are a plain link to the file (served
  // as an attachment), which the browser streams to disk, showing progress itself.
  const IN_PAGE_DOWNLOAD_LIMIT = 16 * 1024 * 1024;

  function humanSize(bytes) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return `${unit ? value.toFixed(value < 10 ? 1 : 0) : value} ${units[unit]}`;
  }

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "className") node.className = value; else node.setAttribute(key, value);
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // --- sending -------------------------------------------------------------------------

  function patchPart(upload, offset, blob, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      upload.xhr = xhr;
      xhr.open("PATCH", `/api/v1/uploads/${upload.id}`);
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.setRequestHeader("Upload-Offset", String(offset));
      xhr.setRequestHeader("Content-Type", "application/offset+octet-stream");
      xhr.upload.onprogress = (e) => onProgress(e.loaded);
      xhr.onload = () => {
        let data = null;
        try { data = JSON.parse(xhr.responseText); } catch (exc) { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) resolve(data);
        else {
          const error = new Error((data && data.error && data.error.message) || `HTTP ${xhr.status}`);
          error.code = data && data.error && data.error.code;
          error.status = xhr.status;
          reject(error);
        }
      };
      xhr.onerror = () => { const e = new Error("the connection to your node was lost"); e.transient = true; reject(e); };
      xhr.onabort = () => { const e = new Error("cancelled"); e.cancelled = true; reject(e); };
      xhr.send(blob);
    });
  }

  function uploadRow(file) {
    const li = el("li", { className: "upload" });
    const name = el("span", { className: "upload-name" }, file.name);
    const size = el("span", { className: "upload-size muted" }, humanSize(file.size));
    const bar = el("progress", { max: "100", value: "0", "aria-label": `Uploading ${file.name}` });
    const pct = el("span", { className: "upload-pct" }, "0%");
    const cancel = el("button", { type: "button", className: "upload-cancel" }, "Cancel");
    const error = el("span", { className: "upload-error error" });
    li.append(name, size, bar, pct, cancel, error);
    $("uploads").appendChild(li);
    return { li, bar, pct, cancel, error };
  }

  async function sendFile(peer, file) {
    const upload = { id: uuid4(), xhr: null, cancelled: false, created: null };
    const row = uploadRow(file);
    row.li.dataset.id = upload.id;
    const show = (done) => {
      const percent = file.size ? Math.min(100, Math.floor((done / file.size) * 100)) : 100;
      row.bar.value = percent;
      row.pct.textContent = `${percent}%`;
    };
    row.cancel.addEventListener("click", async () => {
      upload.cancelled = true;
      if (upload.xhr) upload.xhr.abort();
      row.li.remove();
      // Cancelled before the node answered the create request: wait for that answer, or
      // the DELETE would come first, miss, and the upload would hold quota until it expires.
      try { await upload.created; } catch (exc) { return; }  // never created: nothing to free
      try { await api("DELETE", `/uploads/${upload.id}`); } catch (exc) { /* already gone */ }
    });
    try {
      upload.created = api("POST", `/conversations/${encodeURIComponent(peer)}/uploads`, {
        id: upload.id, name: file.name, size: file.size, type: file.type || "application/octet-stream",
      });
      let state = await upload.created;
      let failures = 0;
      while (!state.complete && !upload.cancelled) {
        const start = state.received;
        const end = Math.min(file.size, start + state.part_size);
        try {
          state = await patchPart(upload, start, file.slice(start, end), (loaded) => show(start + loaded));
          failures = 0;
        } catch (exc) {
          if (exc.cancelled || upload.cancelled) return;
          if (!(exc.transient || exc.code === "upload_offset_mismatch") || failures >= 8) throw exc;
          failures += 1;
          row.error.textContent = "Connection lost, resuming…";
          await new Promise((r) => setTimeout(r, Math.min(8000, 500 * 2 ** failures)));
          state = await api("GET", `/uploads/${upload.id}`);  // the node says how far it got
          row.error.textContent = "";
        }
        show(state.received);
      }
      if (state.message) chat.renderMessage(state.message);
      row.li.remove();
    } catch (exc) {
      row.li.classList.add("failed");
      row.bar.hidden = true;
      row.error.textContent = exc.message;
      row.cancel.textContent = "Dismiss";
    }
  }

  function sendFiles(files) {
    const peer = chat.peer();
    if (!peer) return;
    for (const file of files) sendFile(peer, file);
  }

  $("attach-button").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (event) => {
    sendFiles(Array.from(event.target.files));
    event.target.value = "";
  });
  const zone = $("conversation");
  zone.addEventListener("dragover", (event) => {
    if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
    if ($("attach-button").disabled) return; // blocked, or keys to check first: nothing goes
    event.preventDefault();
    zone.classList.add("dropping");
  });
  // Left for somewhere outside the conversation (not just from one of its parts to another).
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove("dropping");
  });
  zone.addEventListener("drop", (event) => {
    zone.classList.remove("dropping");
    if (!event.dataTransfer || !event.dataTransfer.files.length || $("attach-button").disabled) return;
    event.preventDefault();
    sendFiles(Array.from(event.dataTransfer.files));
  });

  // A file let go anywhere else (the people list, the header) is refused, where the
  // browser would otherwise open it in place of the app.
  const carriesFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files");
  window.addEventListener("dragover", (event) => {
    if (!carriesFiles(event) || event.defaultPrevented) return; // taken by the conversation
    event.preventDefault();
    event.dataTransfer.dropEffect = "none";
  });
  window.addEventListener("drop", (event) => { if (carriesFiles(event)) event.preventDefault(); });

  // --- showing -------------------------------------------------------------------------

  async function download(file, button, bar) {
    if (file.size > IN_PAGE_DOWNLOAD_LIMIT) {  // straight to disk; the browser shows progress
      const a = el("a", { href: file.url, download: file.name });
      document.body.appendChild(a);
      a.click();
      a.remove();
      return;
    }
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    try {
      const response = await fetch(file.url);
      if (!response.ok) {
        const data = await response.json().catch(() => null);
        throw new Error((data && data.error && data.error.message) || `HTTP ${response.status}`);
      }
      const reader = response.body.getReader();
      const parts = [];
      let got = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        got += value.length;
        bar.value = file.size ? Math.floor((got / file.size) * 100) : 100;
      }
      const url = URL.createObjectURL(new Blob(parts, { type: "application/octet-stream" }));
      const a = el("a", { href: url, download: file.name });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      button.textContent = "Downloaded";
    } catch (exc) {
      button.textContent = "Download failed — retry";
      button.title = exc.message;
    } finally {
      button.disabled = false;
      bar.hidden = true;
    }
  }

  function openViewer(file) {
    const dialog = $("media-viewer");
    const img = $("media-viewer-image");
    img.src = `${file.url}?inline=true`;
    img.alt = file.name;
    $("media-viewer-name").textContent = file.name;
    dialog.showModal();
  }

  function fileCard(message) {
    const file = message.file;
    const card = el("div", { className: `file-card ${file.state}` });
    card.dataset.state = file.state;
    const head = el("div", { className: "file-head" });
    const ext = (file.name.match(/\.([A-Za-z0-9]{1,4})$/) || [null, "file"])[1].toUpperCase();
    head.append(el("span", { className: "file-icon", "aria-hidden": "true" }, ext));
    head.append(el("span", { className: "file-name" }, file.name));
    head.append(el("span", { className: "file-size muted" }, humanSize(file.size)));
    card.append(head);
    if (file.state === "ready") {
      const inlineUrl = `${file.url}?inline=true`;
      if (file.media === "image") {
        const link = el("a", { href: inlineUrl, className: "file-thumb", title: "Open full size" });
        const img = el("img", { src: file.thumbnail_url || inlineUrl, alt: file.name, loading: "lazy" });
        link.append(img);
        link.addEventListener("click", (event) => { event.preventDefault(); openViewer(file); });
        card.append(link);
      } else if (file.media === "audio") {
        card.append(el("audio", { controls: "", preload: "metadata", src: inlineUrl }));
      } else if (file.media === "video") {
        card.append(el("video", { controls: "", preload: "metadata", src: inlineUrl, className: "file-video" }));
      }
      const actions = el("div", { className: "file-actions" });
      const button = el("button", { type: "button", className: "file-download" }, "Download");
      const bar = el("progress", { max: "100", value: "0", className: "download-progress" });
      bar.hidden = true;
      button.addEventListener("click", () => download(file, button, bar));
      actions.append(button, bar);
      card.append(actions);
    } else if (file.state === "fetching") {
      const percent = file.size ? Math.floor((file.received / file.size) * 100) : 0;
      card.append(el("progress", { max: "100", value: String(percent), className: "receive-progress" }));
      card.append(el("span", { className: "file-status muted" }, `Receiving… ${percent}%`));
    } else {
      card.append(el("span", { className: "file-status error" }, file.error || "This file could not be received."));
    }
    return card;
  }

  chat.onRender((li, message) => {
    if (message.kind !== "file" || !message.file) return;
    known.set(message.id, message);
    li.classList.add("has-file");
    const body = li.querySelector(".body");
    body.replaceChildren(fileCard(message));
  });

  on("file", (event) => {
    const message = known.get(event.id);
    if (!message) return;
    chat.renderMessage({ ...message, file: event.file });
  });

  $("media-viewer-close").addEventListener("click", () => $("media-viewer").close());
  $("media-viewer").addEventListener("click", (event) => {
    if (event.target === $("media-viewer")) $("media-viewer").close();
  });
})();
