// The dashboard's own behaviour: copy buttons and the live event debugger. Everything else is
// plain HTML forms (and htmx for the live status table).
(function () {
  "use strict";
  document.addEventListener("click", function (e) {
    var button = e.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    var note = button.nextElementSibling;
    var text = source.value || source.textContent;
    var done = function () { if (note) note.textContent = "Copied."; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { source.select(); document.execCommand("copy"); done(); });
    } else {
      source.select();
      document.execCommand("copy");
      done();
    }
  });

  function startDebugger(list) {
    var stream = new EventSource(list.getAttribute("data-stream"));
    stream.addEventListener("event", function (message) {
      var stored;
      try { stored = JSON.parse(message.data); } catch (err) { return; }
      var event = stored.event || {};
      var item = document.createElement("li");
      var details = document.createElement("details");
      var summary = document.createElement("summary");
      summary.textContent = "#" + stored.seq + " " + (event.type || "?") + " " +
        (event.event || event.name || "") + " — " + (event.userId || event.anonymousId || "") +
        " · " + (event.messageId || "");
      var body = document.createElement("pre");
      body.textContent = JSON.stringify(event, null, 2);
      details.appendChild(summary);
      details.appendChild(body);
      item.appendChild(details);
      list.insertBefore(item, list.firstChild);
      while (list.children.length > 200) list.removeChild(list.lastChild);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var list = document.getElementById("debugger");
    if (list) startDebugger(list);
  });
})();
