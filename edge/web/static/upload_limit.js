// Check the total size of the files chosen in a form marked data-max-bytes before it is sent. A body over the
// server's request limit is rejected unread, so the typed fields would be lost. The form's element marked
// data-too-large, whose text the server renders in the page's language, is shown instead.
"use strict";

function chosenBytes(form) {
  let total = 0;
  for (const input of form.querySelectorAll("input[type=file]")) {
    for (const file of input.files) total += file.size;
  }
  return total;
}

function checkUploadSize(form) {
  const message = document.querySelector("[data-too-large='" + form.id + "']");
  const tooLarge = chosenBytes(form) > Number(form.dataset.maxBytes);
  if (message) message.hidden = !tooLarge;
  return !tooLarge;
}

document.addEventListener("change", function (event) {
  const form = event.target.form;
  if (form && form.dataset.maxBytes && event.target.type === "file") checkUploadSize(form);
});

document.addEventListener("submit", function (event) {
  const form = event.target;
  if (form.dataset && form.dataset.maxBytes && !checkUploadSize(form)) event.preventDefault();
});
