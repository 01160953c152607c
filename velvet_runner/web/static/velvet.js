// Live job page: listens to the job's event stream and, on every `job` event, re-reads this
// page and swaps the parts marked data-live. The server renders (and escapes) all markup; this
// script never builds HTML from data. Without JavaScript the page is complete but static.
(function () {
  "use strict";
  var root = document.querySelector("[data-stream]");
  if (!root || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var state = document.getElementById("live-state");
  function say(text, kind) {
    if (state) {
      state.textContent = text;
      state.setAttribute("data-state", kind);
    }
  }
  if (root.getAttribute("data-terminal") === "true") {
    say("Finished: this job is in a terminal state.", "done");
    return;
  }

  var busy = false;
  var again = false;
  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(window.location.href, {
      headers: { Accept: "text/html" }, cache: "no-store", credentials: "same-origin"
    }).then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.text();
    }).then(function (text) {
      var fresh = new DOMParser().parseFromString(text, "text/html");
      var parts = document.querySelectorAll("[data-live]");
      for (var i = 0; i < parts.length; i++) {
        var next = fresh.getElementById(parts[i].id);
        if (next) {
          var nodes = [];
          for (var j = 0; j < next.childNodes.length; j++) {
            nodes.push(document.importNode(next.childNodes[j], true));
          }
          parts[i].replaceChildren.apply(parts[i], nodes);
        }
      }
    }).catch(function () {
      say("Could not refresh the page; reload it.", "lost");
    }).finally(function () {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    });
  }

  var source = new EventSource(root.getAttribute("data-stream"));
  source.addEventListener("open", function () {
    say("Live: updates appear as the job moves.", "live");
  });
  source.addEventListener("job", function (event) {
    var job = JSON.parse(event.data);
    say("Live: last change " + job.updated_at + ".", "live");
    refresh();
  });
  source.addEventListener("end", function () {
    source.close();
    say("Finished: this job reached a terminal state.", "done");
    refresh();
  });
  source.addEventListener("error", function () {
    if (source.readyState !== EventSource.CLOSED) {
      say("Connection lost; reconnecting…", "lost");
    }
  });
}());
