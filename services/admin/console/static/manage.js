// spendgate console, the pages that change things (budgets and keys, alerts, policy): sortable and
// filterable tables, and a confirmation before a destructive form is sent. No framework, no inline script.
"use strict";
(function () {
  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    var sort = cell.getAttribute("data-sort");
    return sort !== null ? sort : cell.textContent.trim();
  }

  function compare(a, b) {
    var x = parseFloat(a), y = parseFloat(b);
    if (!isNaN(x) && !isNaN(y) && String(x) === a.replace(/^0+(?=\d)/, "") && String(y) === b.replace(/^0+(?=\d)/, "")) {
      return x - y;
    }
    return a.localeCompare(b, undefined, { numeric: true });
  }

  function sortBy(table, th, index) {
    var body = table.tBodies[0];
    if (!body) return;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows).filter(function (r) { return r.cells.length > 1; });
    rows.sort(function (r1, r2) {
      var d = compare(cellValue(r1, index), cellValue(r2, index));
      return ascending ? d : -d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function makeSortable(table) {
    if (!table.tHead) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      if (!th.textContent.trim() || th.querySelector(".visually-hidden")) return;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = th.textContent.trim();
      button.setAttribute("aria-label", "Sort by " + button.textContent);
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, th, index); });
    });
  }

  function makeFilter(input) {
    var table = document.getElementById(input.getAttribute("data-manage-filter"));
    if (!table || !table.tBodies[0]) return;
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        row.hidden = needle !== "" && row.textContent.toLowerCase().indexOf(needle) === -1;
      });
    });
  }

  function confirmBeforeSending(form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table[data-manage-sort]").forEach(makeSortable);
    document.querySelectorAll("input[data-manage-filter]").forEach(makeFilter);
    document.querySelectorAll("form[data-confirm]").forEach(confirmBeforeSending);
  });
})();
