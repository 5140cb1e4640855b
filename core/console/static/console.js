// Live updates: the page listens to its client's server-sent events and, when a conversation it shows changed,
// fetches its own fragment again and swaps it in. No framework, no build step.
(function () {
  "use strict";
  var body = document.body;
  var eventsUrl = body.dataset.events;
  var target = body.dataset.target && document.getElementById(body.dataset.target);
  if (!eventsUrl || !target || !window.EventSource) {
    return;
  }
  var conversation = body.dataset.conversation ? Number(body.dataset.conversation) : null;
  var loading = false;
  var again = false;

  function refresh() {
    if (loading) { again = true; return; }
    loading = true;
    fetch(body.dataset.refresh, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html !== null) { target.innerHTML = html; } })
      .finally(function () {
        loading = false;
        if (again) { again = false; refresh(); }
      });
  }

  var source = new EventSource(eventsUrl);
  source.addEventListener("changed", function (event) {
    var ids = JSON.parse(event.data);
    if (conversation === null || ids.indexOf(conversation) !== -1) {
      refresh();
    }
  });
  body.dataset.live = "connected";
})();
