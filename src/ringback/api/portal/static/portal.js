// ringback court portal: uploads with a progress bar, and import progress. No framework,
// no build step; every page works without this script (the forms post normally).
"use strict";

function sendWithProgress(form) {
  var box = form.querySelector(".progress");
  var bar = form.querySelector("progress");
  var text = form.querySelector(".progress-text");
  var error = form.querySelector("#upload-error");
  var button = form.querySelector("button[type=submit]");
  var csrf = form.querySelector("input[name=csrf]").value;
  var xhr = new XMLHttpRequest();
  xhr.open("POST", form.action);
  xhr.setRequestHeader("Accept", "application/json");
  xhr.setRequestHeader("X-CSRF-Token", csrf);
  box.hidden = false;
  error.hidden = true;
  bar.value = 0;
  button.disabled = true;
  xhr.upload.onprogress = function (e) {
    if (e.lengthComputable) {
      bar.value = Math.round((e.loaded / e.total) * 100);
      text.textContent = bar.value + "%";
    }
  };
  xhr.upload.onload = function () {
    bar.removeAttribute("value"); // indeterminate while the server works
    text.textContent = text.getAttribute("data-processing");
  };
  xhr.onload = function () {
    var body = null;
    try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
    if (xhr.status >= 200 && xhr.status < 300 && body) {
      if (body.progress) {
        followImport(body, bar, text, error, button);
      } else {
        window.location.assign(body.location);
      }
      return;
    }
    fail(body && body.error ? body.error.message : xhr.statusText);
  };
  xhr.onerror = function () { fail(xhr.statusText || "HTTP error"); };
  function fail(message) {
    box.hidden = true;
    button.disabled = false;
    error.textContent = message;
    error.hidden = false;
    error.setAttribute("tabindex", "-1");
    error.focus();
  }
  xhr.send(new FormData(form));
}

function followImport(job, bar, text, error, button) {
  bar.value = 0;
  function poll() {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", job.progress);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.onload = function () {
      var p = JSON.parse(xhr.responseText);
      bar.value = p.percent;
      text.textContent = p.status_text + " " + p.percent + "%";
      if (p.finished) {
        window.location.assign(job.location);
      } else {
        window.setTimeout(poll, 300);
      }
    };
    xhr.send();
  }
  poll();
}

function followJob(box) {
  var url = box.getAttribute("data-progress");
  if (!url) { return; }
  var xhr = new XMLHttpRequest();
  xhr.open("GET", url);
  xhr.setRequestHeader("Accept", "application/json");
  xhr.onload = function () {
    var p = JSON.parse(xhr.responseText);
    document.getElementById("job-progress").value = p.percent;
    document.getElementById("job-status").textContent = p.status_text;
    document.getElementById("job-rows").textContent = p.rows;
    if (p.finished) {
      window.location.reload();
    } else {
      window.setTimeout(function () { followJob(box); }, 500);
    }
  };
  xhr.send();
}

document.addEventListener("DOMContentLoaded", function () {
  var forms = document.querySelectorAll("form[data-upload]");
  Array.prototype.forEach.call(forms, function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.FormData || !form.querySelector("input[type=file]").files.length) { return; }
      e.preventDefault();
      sendWithProgress(form);
    });
  });
  var job = document.getElementById("job");
  if (job) { followJob(job); }
});
