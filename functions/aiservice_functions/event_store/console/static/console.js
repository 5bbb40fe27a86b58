// The console's only script: live counts, "select all", and replay progress.
// It never builds HTML from data: every value goes in through textContent.
"use strict";

(function () {
  const main = document.querySelector("main");
  const csrf = main ? main.dataset.csrf : "";
  const POLL_MS = 5000;

  function setText(selector, value) {
    document.querySelectorAll(selector).forEach((el) => { el.textContent = String(value); });
  }

  // --- live counts ----------------------------------------------------------------
  function applyCounts(counts) {
    for (const [key, value] of Object.entries(counts.totals)) {
      setText(`[data-total="${key}"]`, value);
    }
    for (const s of counts.services) {
      for (const key of ["unreplayed", "deadLetters", "audit"]) {
        document.querySelectorAll("[data-count]").forEach((el) => {
          if (el.dataset.count === `${s.namespace}/${s.name}/${key}`) el.textContent = String(s[key]);
        });
      }
    }
    document.body.dataset.countsAt = new Date().toISOString();
  }

  async function refreshCounts() {
    try {
      const response = await fetch("/console/api/counts", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401) return false;  // signed out: stop polling
      if (response.ok) applyCounts(await response.json());
    } catch (err) {
      // the store may be restarting; try again at the next tick
    }
    return true;
  }

  async function pollCounts() {
    if (await refreshCounts()) setTimeout(pollCounts, POLL_MS);
  }

  if (document.querySelector("[data-total], [data-count]") && csrf) pollCounts();

  // --- select all -----------------------------------------------------------------
  document.querySelectorAll("[data-select-all]").forEach((box) => {
    box.addEventListener("change", () => {
      const form = box.closest("form");
      form.querySelectorAll('input[name="seq"]').forEach((el) => { el.checked = box.checked; });
    });
  });

  // --- replay ---------------------------------------------------------------------
  // One client function for both answers a replay can get: 200 with the outcome once it
  // is done, or 202 with a job id, which is then polled until the job leaves "running".
  async function runReplay(form, onProgress) {
    const body = new FormData(form);
    const response = await fetch(form.action, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRF-Token": csrf },
    });
    let payload = {};
    try { payload = await response.json(); } catch (err) { payload = {}; }
    if (!response.ok && response.status !== 202) {
      throw new Error(payload.error || `HTTP ${response.status}`);
    }
    while (response.status === 202 && payload.id && payload.state === "running") {
      onProgress(payload);
      await new Promise((r) => setTimeout(r, 500));
      const poll = await fetch(`/console/api/replays/${encodeURIComponent(payload.id)}`, { credentials: "same-origin" });
      payload = await poll.json();
    }
    return payload;
  }

  function job() {
    const panel = document.getElementById("job");
    const part = (name) => panel.querySelector(`[data-job="${name}"]`);
    return { panel, state: part("state"), summary: part("summary"), progress: part("progress"), results: part("results") };
  }

  function showResults(j, summary) {
    const tbody = j.results.querySelector("tbody");
    tbody.replaceChildren();
    for (const r of summary.results || []) {
      const tr = document.createElement("tr");
      const outcome = r.ok ? `HTTP ${r.status}` : (r.error || "failed");
      for (const value of [r.seq, r.id, r.target, outcome]) {
        const td = document.createElement("td");
        td.textContent = String(value);
        tr.appendChild(td);
      }
      tr.className = r.ok ? "ok" : "failed";
      tbody.appendChild(tr);
      if (r.ok) {
        document.querySelectorAll(`tr[data-seq="${Number(r.seq)}"] [data-state]`).forEach((el) => {
          el.textContent = "replayed"; el.className = "state replayed";
        });
        if (document.querySelector(`input[name="seq"][type="hidden"][value="${Number(r.seq)}"]`)) {
          document.querySelectorAll("h1 [data-state]").forEach((el) => { el.textContent = "replayed"; el.className = "state replayed"; });
        }
      }
    }
    j.results.hidden = false;
  }

  document.querySelectorAll("form[data-replay]").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const j = job();
      const chosen = form.querySelectorAll('input[name="seq"]:checked, input[name="seq"][type="hidden"]').length;
      j.panel.hidden = false;
      j.results.hidden = true;
      if (!chosen) {
        j.state.textContent = "nothing selected";
        j.state.dataset.state = "idle";
        j.summary.textContent = "tick the dead letters to replay first";
        return;
      }
      form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      j.state.textContent = "running";
      j.state.dataset.state = "running";
      j.summary.textContent = `replaying ${chosen} dead letter${chosen === 1 ? "" : "s"}…`;
      j.progress.removeAttribute("value");
      try {
        const summary = await runReplay(form, (p) => {
          if (p.selected) { j.progress.max = p.selected; j.progress.value = p.done || 0; }
        });
        j.progress.max = 1; j.progress.value = 1;
        const skipped = chosen - (summary.selected || 0);
        j.state.textContent = summary.failed ? "finished with failures" : "done";
        j.state.dataset.state = summary.failed ? "failed" : "done";
        j.summary.textContent = `${summary.replayed} replayed, ${summary.failed} failed` +
          (skipped > 0 ? `, ${skipped} skipped (replayed before, or being replayed)` : "");
        showResults(j, summary);
        refreshCounts();
      } catch (err) {
        j.state.textContent = "refused";
        j.state.dataset.state = "error";
        j.summary.textContent = err.message;
        j.progress.max = 1; j.progress.value = 0;
      } finally {
        form.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      }
    });
  });
})();
