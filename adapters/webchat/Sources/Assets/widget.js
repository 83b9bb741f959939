/* Switchboard web chat loader: draws the launcher and opens the chat in an iframe served by the
   daemon. Embed: <script src="https://chat.example.com/webchat/<channel>/widget.js" async></script>
   Options on the tag: data-locale="en|ko|ja", data-position="left|right", data-color="#2457d6".
   API: window.SwitchboardChat.open() / close() / identify({user_id, user_hash, name, email} or {jwt}). */
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me || window.SwitchboardChat) return;
  var src = new URL(me.src, location.href);
  var origin = src.origin;
  var base = src.href.replace(/\/widget\.js(\?.*)?$/, "");
  var ds = me.dataset || {};
  var lang = (ds.locale || navigator.language || "en").slice(0, 2).toLowerCase();
  if (["en", "ko", "ja"].indexOf(lang) < 0) lang = "en";
  var L = { en: ["Open chat", "Close chat", "unread"], ko: ["채팅 열기", "채팅 닫기", "읽지 않음"], ja: ["チャットを開く", "チャットを閉じる", "未読"] }[lang];
  var left = ds.position === "left";
  var color = /^#[0-9a-f]{3,8}$/i.test(ds.color || "") ? ds.color : "#2457d6";
  var frame = null, open = false, ready = false, queue = [], pages = [];
  var side = left ? "left:20px;" : "right:20px;";

  var btn = document.createElement("button");
  btn.type = "button";
  btn.setAttribute("aria-label", L[0]);
  btn.setAttribute("aria-expanded", "false");
  btn.style.cssText = "position:fixed;bottom:20px;" + side + "width:56px;height:56px;border-radius:50%;border:0;cursor:pointer;z-index:2147483000;box-shadow:0 4px 14px rgba(0,0,0,.25);background:" + color + ";color:#fff;padding:0";
  btn.innerHTML = '<svg width="26" height="26" viewBox="0 0 24 24" aria-hidden="true" fill="currentColor"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';
  var badge = document.createElement("span");
  badge.style.cssText = "position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;border-radius:10px;background:#d93025;color:#fff;font:bold 12px/20px sans-serif;display:none;padding:0 5px;box-sizing:border-box";
  btn.appendChild(badge);

  function context() {
    return { url: location.href, title: document.title, referrer: document.referrer, pages: pages.slice(-20) };
  }
  function post(msg) {
    if (ready && frame) frame.contentWindow.postMessage(msg, origin); else queue.push(msg);
  }
  function page() {
    if (pages[pages.length - 1] !== location.href) pages.push(location.href);
    post({ sb: "context", context: context() });
  }
  function makeFrame() {
    frame = document.createElement("iframe");
    frame.title = "Chat";
    frame.src = base + "/chat?locale=" + lang + "&parent=" + encodeURIComponent(location.origin);
    frame.setAttribute("allow", "clipboard-write");
    frame.style.cssText = "position:fixed;bottom:88px;" + side + "width:370px;max-width:calc(100vw - 24px);height:560px;max-height:calc(100vh - 110px);border:0;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.25);z-index:2147483000;background:#fff;display:none";
    document.body.appendChild(frame);
  }
  function setOpen(v) {
    if (!frame) makeFrame();
    open = v;
    frame.style.display = v ? "block" : "none";
    btn.setAttribute("aria-expanded", String(v));
    btn.setAttribute("aria-label", v ? L[1] : L[0]);
    post({ sb: v ? "open" : "close" });
    if (!v) btn.focus();
  }
  btn.addEventListener("click", function () { setOpen(!open); });

  window.addEventListener("message", function (e) {
    // Only our own iframe, from the daemon's origin.
    if (!frame || e.origin !== origin || e.source !== frame.contentWindow) return;
    var d = e.data || {};
    if (d.sb === "ready") {
      ready = true;
      post({ sb: "context", context: context() });
      while (queue.length) frame.contentWindow.postMessage(queue.shift(), origin);
      if (open) post({ sb: "open" });
    } else if (d.sb === "unread") {
      var n = d.count | 0;
      badge.textContent = n > 99 ? "99+" : String(n);
      badge.style.display = n > 0 ? "block" : "none";
      btn.setAttribute("aria-label", (open ? L[1] : L[0]) + (n > 0 ? " (" + n + " " + L[2] + ")" : ""));
    } else if (d.sb === "close") {
      setOpen(false);
    }
  });

  function start() {
    document.body.appendChild(btn);
    makeFrame();
    page();
    // Single-page apps: report navigations through the History API.
    ["pushState", "replaceState"].forEach(function (k) {
      var f = history[k];
      history[k] = function () { var r = f.apply(this, arguments); setTimeout(page, 0); return r; };
    });
    window.addEventListener("popstate", page);
  }
  window.SwitchboardChat = {
    open: function () { setOpen(true); },
    close: function () { setOpen(false); },
    identify: function (id) { post({ sb: "identify", identity: id }); },
    // Call when the site's user signs out: their chat token is revoked and forgotten.
    reset: function () { post({ sb: "reset" }); }
  };
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
