/* Sorting, filtering and per-entry drill-down of the eegbench leaderboard site (written by
 * `eegbench leaderboard --site`). Plain DOM code: no library, no network, works from file://.
 *
 * A table of class "board" holds one <tbody> per entry: its first row is the entry's summary, whose
 * cells carry their sort key in data-sort (empty: no value, always sorted last); an optional second
 * row holds the drill-down. Sorting reorders the <tbody> elements; ties keep the page's order. */
"use strict";

function sortKey(body, column) {
  return body.rows[0].cells[column].dataset.sort || "";
}

function compareEntries(a, b, column, numeric, ascending) {
  const x = sortKey(a, column);
  const y = sortKey(b, column);
  if (x === "" || y === "") {
    if (x !== y) return x === "" ? 1 : -1;
  } else {
    const order = numeric ? Number(x) - Number(y) : (x < y ? -1 : x > y ? 1 : 0);
    if (order !== 0) return ascending ? order : -order;
  }
  return Number(a.dataset.position) - Number(b.dataset.position);
}

function sortBy(table, column) {
  const headers = Array.from(table.tHead.rows[0].cells);
  const header = headers[column];
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  headers.forEach((other) => other.removeAttribute("aria-sort"));
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const numeric = header.dataset.type === "number";
  const bodies = Array.from(table.tBodies);
  bodies.sort((a, b) => compareEntries(a, b, column, numeric, ascending));
  bodies.forEach((body) => table.appendChild(body));
}

function matches(body, control) {
  const wanted = control.value.trim().toLowerCase();
  if (wanted === "") return true;
  const key = sortKey(body, Number(control.dataset.column)).toLowerCase();
  return control.tagName === "SELECT" ? key === wanted : key.includes(wanted);
}

function setUpFilters(form) {
  const table = document.getElementById(form.dataset.table);
  const controls = Array.from(form.querySelectorAll("[data-column]"));
  const count = form.querySelector("output");
  const apply = () => {
    let shown = 0;
    for (const body of table.tBodies) {
      body.hidden = !controls.every((control) => matches(body, control));
      if (!body.hidden) shown += 1;
    }
    count.textContent = `${shown} of ${table.tBodies.length} shown`;
  };
  controls.forEach((control) => control.addEventListener("input", apply));
  form.addEventListener("submit", (event) => event.preventDefault());
}

function setUpTable(table) {
  Array.from(table.tBodies).forEach((body, position) => { body.dataset.position = String(position); });
  Array.from(table.tHead.rows[0].cells).forEach((header, column) => {
    const button = header.querySelector("button.sort");
    if (button) button.addEventListener("click", () => sortBy(table, column));
  });
}

function toggle(button, open) {
  document.getElementById(button.getAttribute("aria-controls")).hidden = !open;
  button.setAttribute("aria-expanded", String(open));
}

/* An entry named in the address (its permanent link) opens with its drill-down shown. */
function openLinkedEntry() {
  const id = decodeURIComponent(window.location.hash.slice(1));
  const body = id ? document.getElementById(id) : null;
  const button = body ? body.querySelector("button.toggle") : null;
  if (button) toggle(button, true);
}

document.querySelectorAll("table.board").forEach(setUpTable);
document.querySelectorAll("form.filters").forEach(setUpFilters);
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.toggle");
  if (button) toggle(button, button.getAttribute("aria-expanded") !== "true");
});
window.addEventListener("hashchange", openLinkedEntry);
openLinkedEntry();
