// The console's only script (the CSP allows no other): live job status and the CSV count.
"use strict";

// An element with data-poll="URL" is replaced by the server-rendered fragment at URL
// every two seconds, until the job has ended (the fragment then has no running status).
function poll(element) {
  const url = element.getAttribute("data-poll");
  const refresh = async () => {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const html = await response.text();
    const parsed = new DOMParser().parseFromString(html, "text/html");
    element.replaceChildren(...parsed.body.childNodes);
    const ended = !element.querySelector(".status.s-scheduled, .status.s-running, .status.s-waiting");
    if (ended) {
      window.location.reload(); // the whole page: actions and the audit trail change too
      return;
    }
    window.setTimeout(refresh, 2000);
  };
  window.setTimeout(refresh, 1000);
}

// A file input with data-count-into="ID" shows how many identities the chosen CSV has.
function countRows(input) {
  const target = document.getElementById(input.getAttribute("data-count-into"));
  input.addEventListener("change", async () => {
    const file = input.files && input.files[0];
    if (!file) { target.textContent = ""; return; }
    const lines = (await file.text()).split(/\r?\n/).filter((line) => line.trim() !== "");
    const header = lines.length > 0 && lines[0].replace(/\s/g, "").toLowerCase() === "namespace,id";
    const count = lines.length - (header ? 1 : 0);
    target.textContent = `${count.toLocaleString("en")} identit${count === 1 ? "y" : "ies"} in ${file.name}`;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach(poll);
  document.querySelectorAll("input[data-count-into]").forEach(countRows);
});
