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
    var say = function (message) {
      if (!note) return;
      note.textContent = message;
      setTimeout(function () { note.textContent = ""; }, 3000);
    };
    var fallback = function () {
      source.select();
      var copied = false;
      try { copied = document.execCommand("copy"); } catch (err) { copied = false; }
      say(copied ? "Copied." : "Copy failed: the text is selected, press Ctrl+C (⌘C).");
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { say("Copied."); }, fallback);
    } else {
      fallback();
    }
  });

  function startDebugger(list) {
    var status = document.getElementById("debugger-status");
    var stream = new EventSource(list.getAttribute("data-stream"));
    var show = function (text) { if (status) status.textContent = text; };
    show("Connecting…");
    stream.addEventListener("open", function () { show("Connected: new events appear below as they arrive."); });
    stream.addEventListener("error", function () { show("Connection lost; reconnecting…"); });
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
