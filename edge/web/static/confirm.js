// Ask before a form marked data-confirm is sent, such as removing a watchlist entry.
"use strict";
document.addEventListener("submit", function (event) {
  const question = event.target.dataset ? event.target.dataset.confirm : undefined;
  if (question && !window.confirm(question)) event.preventDefault();
});
