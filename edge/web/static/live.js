// Live hits: prepend rows that the server renders and pushes over a WebSocket; reconnect on loss.
"use strict";
(function () {
  const MAX_ROWS = 200;
  const table = document.getElementById("live-hits");
  const status = document.getElementById("live-status");
  if (!table || !status) return;
  const body = table.tBodies[0];
  let delayMs = 1000;
  let connectedBefore = false;

  function rowFromHtml(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function showRow(html) {
    const row = rowFromHtml(html);
    if (!row || document.querySelector('tr[data-hit-id="' + row.dataset.hitId + '"]')) return;
    row.classList.add("new");
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
    const empty = document.getElementById("live-empty");
    if (empty) empty.remove();
  }

  // After a reconnect, rows sent while the socket was down are fetched from the server's latest list.
  async function reloadRows() {
    const response = await fetch("/live/rows", {credentials: "same-origin"});
    if (response.ok) body.innerHTML = await response.text();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws/live");
    socket.onopen = function () {
      status.textContent = status.dataset.connected;
      status.className = "status connected";
      delayMs = 1000;
      if (connectedBefore) reloadRows();
      connectedBefore = true;
    };
    socket.onmessage = function (event) {
      showRow(JSON.parse(event.data).html);
    };
    socket.onclose = function () {
      status.textContent = status.dataset.disconnected;
      status.className = "status disconnected";
      setTimeout(connect, delayMs);
      delayMs = Math.min(delayMs * 2, 15000);
    };
  }
  connect();
})();
