"use strict";
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  const button = document.getElementById("login-button");
  error.hidden = true;
  button.disabled = true;
  button.textContent = "Logging in…"; // checking a password takes a moment, longer with the directory slow
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
      localStorage.setItem("flame:session", `in ${Date.now()}`); // other open tabs follow (common.js)
      window.location.assign("/");
      return; // the button stays "Logging in…" while the app loads
    }
    const body = await response.json().catch(() => ({}));
    const detail = body.error || {};
    const text = detail.message || `Login failed (${response.status})`;
    error.textContent = text.charAt(0).toUpperCase() + text.slice(1);
    if (response.status === 401) {
      const password = document.getElementById("password");
      password.value = "";
      password.focus();
    }
    const home = detail.code === "wrong_home_node" && detail.details && detail.details.home_url;
    if (home && /^https?:\/\//.test(home)) {
      // Their account lives on another node: offer the way there (text only, never HTML).
      const link = document.createElement("a");
      link.href = `${home.replace(/\/+$/, "")}/login`;
      link.id = "home-node-link";
      link.textContent = home;
      error.append(" — log in at ", link);
    }
    if (response.status === 429) {
      const wait = response.headers.get("Retry-After");
      if (wait) error.append(` (try again in ${wait} s)`);
    }
    error.hidden = false;
  } catch (exc) {
    error.textContent = "This node cannot be reached.";
    error.hidden = false;
  }
  button.disabled = false;
  button.textContent = "Log in";
});
// Logged in from another tab meanwhile: this one goes in too.
window.addEventListener("storage", (e) => {
  if (e.key === "flame:session" && e.newValue && e.newValue.startsWith("in ")) window.location.assign("/");
});
