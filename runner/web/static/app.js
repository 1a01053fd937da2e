// runner web: progressive enhancement only. Every page works without this file.
"use strict";

// Forms that change devices ask first.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const button = event.submitter;
  const question = (button && button.dataset.confirm) || form.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

// Live progress: an element with data-progress (a JSON URL) is polled while its run goes;
// counts and the bar follow, and the page reloads when the run has ended.
function text(el, value) { if (el) el.textContent = value; }

function countsHtml(summary) {
  const frag = document.createDocumentFragment();
  for (const [status, n] of Object.entries(summary)) {
    if (!n) continue;
    const span = document.createElement("span");
    span.className = "count st-" + status;
    span.textContent = n + " " + status.replace(/_/g, " ");
    frag.appendChild(span);
  }
  return frag;
}

function follow(el) {
  const url = el.dataset.progress;
  const tick = async () => {
    let data;
    try {
      const answer = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (!answer.ok) return setTimeout(tick, 5000);
      data = await answer.json();
    } catch (e) {
      return setTimeout(tick, 5000);
    }
    text(el.querySelector("[data-done]"), data.done);
    text(el.querySelector("[data-total]"), data.total);
    const bar = el.querySelector("[data-bar]");
    if (bar) { bar.max = data.total || 1; bar.value = data.done; }
    const counts = el.querySelector("[data-counts]");
    if (counts) { counts.replaceChildren(countsHtml(data.summary)); }
    if (data.status !== "running") { window.location.reload(); return; }
    setTimeout(tick, 2000);
  };
  setTimeout(tick, 1000);
}

document.querySelectorAll("[data-progress]").forEach(follow);
