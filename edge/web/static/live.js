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

  // The server closes the socket with this code when the login has ended (logout, expiry, disabled user).
  const SESSION_ENDED_CODE = 4401;

  function goToLogin() {
    location.assign("/login?next=" + encodeURIComponent(location.pathname));
  }

  // The header makes the server return 401 instead of a redirect when the login has ended.
  function fetchRows() {
    return fetch("/live/rows", {credentials: "same-origin", headers: {"X-Requested-With": "XMLHttpRequest"}});
  }

  // After a reconnect, rows sent while the socket was down are fetched from the server's latest list.
  async function reloadRows() {
    const response = await fetchRows();
    if (response.status === 401) goToLogin();
    else if (response.ok) body.innerHTML = await response.text();
  }

  // A handshake refused for an ended login gives the page no status code, so ask the server directly.
  async function loginEnded() {
    try {
      return (await fetchRows()).status === 401;
    } catch (error) {
      return false;  // the server is unreachable: keep trying to reconnect
    }
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
    socket.onclose = async function (event) {
      status.textContent = status.dataset.disconnected;
      status.className = "status disconnected";
      if (event.code === SESSION_ENDED_CODE || await loginEnded()) {
        goToLogin();
        return;
      }
      setTimeout(connect, delayMs);
      delayMs = Math.min(delayMs * 2, 15000);
    };
  }
  connect();
})();
