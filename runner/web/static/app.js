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

function el(tag, cls, content) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (content !== undefined) node.textContent = content;
  return node;
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  if (value < 60) return value.toFixed(1) + "s";
  const minutes = Math.floor(value / 60);
  if (minutes < 60) return minutes + "m" + String(Math.floor(value % 60)).padStart(2, "0") + "s";
  return Math.floor(minutes / 60) + "h" + String(minutes % 60).padStart(2, "0") + "m";
}

function deviceHref(run, host) { return "/runs/" + run + "/devices/" + encodeURIComponent(host); }

// The run page's device grid, failure table and in-progress list, from /api/runs/ID/live.
function renderLive(data) {
  const grid = document.querySelector("[data-grid]");
  if (grid && !window.location.search.includes("page=") && !window.location.search.includes("status=")) {
    const cells = data.devices.map((d) => {
      const a = el("a", "cell st-" + d.status, d.host);
      a.href = deviceHref(data.run_id, d.host);
      a.dataset.host = d.host;
      a.title = d.host + ": " + d.status + (d.error_class ? " (" + d.error_class + ")" : "");
      return a;
    });
    grid.replaceChildren(...cells);
    const empty = document.querySelector("[data-empty]");
    if (empty) empty.hidden = cells.length > 0;
  }
  const failed = document.querySelector("[data-failed]");
  const rows = document.querySelector("[data-failed-rows]");
  if (failed && rows) {
    rows.replaceChildren(...data.failed.map((d) => {
      const tr = el("tr");
      const host = el("td"); const link = el("a", "", d.host); link.href = deviceHref(data.run_id, d.host);
      host.appendChild(link);
      const status = el("td"); status.appendChild(el("span", "st st-" + d.status, d.status.replace(/_/g, " ")));
      const error = el("td");
      if (d.error_class) { error.appendChild(el("b", "", d.error_class)); error.appendChild(document.createTextNode(": ")); }
      error.appendChild(document.createTextNode(d.error || ""));
      tr.append(host, status, error, el("td", "", seconds(d.duration_s)));
      return tr;
    }));
    failed.hidden = data.failed.length === 0;
  }
  const working = document.querySelector("[data-working-list]");
  if (working) {
    working.replaceChildren(...data.in_progress.map((d) => {
      const li = el("li", "mono");
      li.dataset.host = d.host;
      li.append(el("span", "", d.host + " "), el("span", "muted", seconds(d.elapsed_s)));
      return li;
    }));
    text(document.querySelector("[data-waiting]"), data.waiting);
    text(document.querySelector("[data-working-count]"),
      data.in_progress_total ? data.in_progress_total + " device" + (data.in_progress_total === 1 ? "" : "s") : "none");
  }
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
    if (data.devices) renderLive(data);
    if (data.status !== "running") { window.location.reload(); return; }
    setTimeout(tick, 2000);
  };
  tick();
}

document.querySelectorAll("[data-progress]").forEach(follow);
