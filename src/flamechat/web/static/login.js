"use strict";
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  const button = document.getElementById("login-button");
  error.hidden = true;
  button.disabled = true;
  try {
    const response = await fetch("/api/v1/sessions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        username: document.getElementById("username").value.trim().toLowerCase(),
        password: document.getElementById("password").value,
      }),
    });
    if (response.ok) {
      window.location.assign("/");
      return;
    }
    const body = await response.json().catch(() => ({}));
    const detail = body.error || {};
    let text = detail.message || `Login failed (${response.status})`;
    if (detail.code === "wrong_home_node" && detail.details && detail.details.home_url) {
      text += ` — ${detail.details.home_url}`;
    }
    error.textContent = text;
    error.hidden = false;
  } catch (exc) {
    error.textContent = "This node cannot be reached.";
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});
