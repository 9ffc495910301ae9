"use strict";
// A filter over the people list: what is typed narrows it to the people whose name or
// username holds it (in any case); Enter opens the first one left, Escape clears it.
// The list changes under it (people added, names updated live): it is applied again.

(() => {
  const { $ } = flame;
  const input = $("people-filter");
  const list = $("users");
  const none = $("people-filter-none");
  if (!input || !list || !none) return;

  function apply() {
    const wanted = input.value.trim().toLowerCase();
    let left = 0;
    for (const li of list.querySelectorAll("li.user")) {
      const name = li.querySelector(".name").textContent.toLowerCase();
      const fits = !wanted || name.includes(wanted) || li.dataset.username.toLowerCase().includes(wanted);
      if (li.hidden === fits) li.hidden = !fits;
      if (fits) left += 1;
    }
    none.hidden = !wanted || left > 0;
  }

  input.addEventListener("input", apply);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      const first = list.querySelector("li.user:not([hidden]) button.open-conversation");
      if (first) first.click();
    } else if (e.key === "Escape" && input.value) {
      input.value = "";
      apply();
    }
  });
  new MutationObserver(apply).observe(list, { childList: true, subtree: true, characterData: true });
})();
