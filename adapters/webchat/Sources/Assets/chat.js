/* Switchboard web chat: the app inside the iframe. Plain JS, no framework. Everything a visitor
   or an agent wrote is put in the page with textContent, never as HTML. */
(function () {
  "use strict";
  var T = {
    en: { title: "Chat with us", send: "Send", message: "Message", attach: "Attach a file", close: "Close chat",
      online: "We're online", away: "We're away", back: "Back {t}", read: "Read", sent: "Sent", sending: "Sending…",
      typing: "Typing…", slow: "You're sending messages too fast. Try again in {s} s.", offline: "Reconnecting…",
      start: "Start chat", intro: "Tell us a little about you first.", name: "Name", email: "Email", phone: "Phone",
      required: "Please fill in: {f}", optional: "(optional)", tooBig: "That file is too large.", badType: "That file type is not allowed.",
      upload: "Upload failed.", away_email: "We'll also answer by email.", you: "You", agent: "Support", image: "Image",
      failed: "Not sent: {e}", newMsg: "New message" },
    ko: { title: "문의하기", send: "보내기", message: "메시지", attach: "파일 첨부", close: "채팅 닫기",
      online: "상담 가능", away: "지금은 부재중입니다", back: "{t}에 돌아옵니다", read: "읽음", sent: "전송됨", sending: "전송 중…",
      typing: "입력 중…", slow: "메시지를 너무 빨리 보내고 있습니다. {s}초 후 다시 시도하세요.", offline: "다시 연결하는 중…",
      start: "채팅 시작", intro: "먼저 간단한 정보를 알려 주세요.", name: "이름", email: "이메일", phone: "전화번호",
      required: "입력해 주세요: {f}", optional: "(선택)", tooBig: "파일이 너무 큽니다.", badType: "허용되지 않는 파일 형식입니다.",
      upload: "업로드에 실패했습니다.", away_email: "이메일로도 답변드립니다.", you: "나", agent: "상담원", image: "이미지",
      failed: "전송 실패: {e}", newMsg: "새 메시지" },
    ja: { title: "お問い合わせ", send: "送信", message: "メッセージ", attach: "ファイルを添付", close: "チャットを閉じる",
      online: "対応中", away: "ただいま不在です", back: "{t}に対応を再開します", read: "既読", sent: "送信済み", sending: "送信中…",
      typing: "入力中…", slow: "送信が速すぎます。{s}秒後にもう一度お試しください。", offline: "再接続しています…",
      start: "チャットを開始", intro: "はじめにお名前などを教えてください。", name: "お名前", email: "メールアドレス", phone: "電話番号",
      required: "入力してください: {f}", optional: "(任意)", tooBig: "ファイルが大きすぎます。", badType: "このファイル形式は使用できません。",
      upload: "アップロードに失敗しました。", away_email: "メールでもご返信します。", you: "あなた", agent: "サポート", image: "画像",
      failed: "送信できませんでした: {e}", newMsg: "新着メッセージ" }
  };
  var q = new URLSearchParams(location.search);
  var lang = (q.get("locale") || navigator.language || "en").slice(0, 2).toLowerCase();
  if (!T[lang]) lang = "en";
  var S = T[lang];
  function t(k, v) { return (S[k] || k).replace(/\{(\w)\}/g, function (_, x) { return v && v[x] != null ? v[x] : ""; }); }
  document.documentElement.lang = lang;

  var parentOrigin = q.get("parent") || "";
  var base = location.pathname.replace(/\/chat$/, "");
  var channel = base.split("/").pop();
  var KEY = "sb_token_" + channel;
  var $ = function (id) { return document.getElementById(id); };
  var log = $("log"), input = $("input"), form = $("composer"), err = $("error"), typingEl = $("typing");

  var token = null;
  try { token = localStorage.getItem(KEY); } catch (e) { }
  var ws = null, connected = false, backoff = 1000, lastSeq = 0, seen = {}, pending = [], identity = null, pageContext = {};
  var cfg = {}, profile = {}, isOpen = false, agentRead = 0, unread = 0, readSent = 0, deliveredSent = 0, typingTimer = null, typingOn = false;
  var myTurn = 0, newVisit = true, visitorId = null, reconnectTimer = null, halted = false, lastOut = 0, agentTypingTimer = null;

  // Static labels.
  $("send").textContent = t("send"); $("input-label").textContent = t("message"); input.placeholder = t("message");
  $("attach-label").setAttribute("aria-label", t("attach")); $("attach-label").title = t("attach");
  $("close").setAttribute("aria-label", t("close")); $("title").textContent = t("title");
  $("prechat-intro").textContent = t("intro"); $("prechat-submit").textContent = t("start");

  function toParent(msg) { if (parentOrigin && window.parent !== window) window.parent.postMessage(msg, parentOrigin); }

  window.addEventListener("message", function (e) {
    if (e.source !== window.parent || e.origin !== parentOrigin) return;
    var d = e.data || {};
    if (d.sb === "open") { isOpen = true; halted = false; markRead(); setTimeout(function () { input.focus(); }, 0); if (!ws) connect(); }
    else if (d.sb === "reset") {
      // The site's user signed out: revoke the token on the server, forget it here, and show
      // nothing of their conversation; the next chat starts as a new visitor.
      // Over HTTP: the socket may still be connecting (a new page calls reset() at once).
      if (token) { try { fetch(base + "/logout", { method: "POST", headers: { "Authorization": "Bearer " + token }, keepalive: true }); } catch (e) { } }
      token = null; try { localStorage.removeItem(KEY); } catch (e) { }
      identity = null; profile = {}; visitorId = null; pending = [];
      resetVisitor(); log.querySelectorAll("li.msg").forEach(function (li) { li.remove(); });
      halted = true; connected = false;
      if (ws) { var old = ws; ws = null; old.close(); }
    }
    else if (d.sb === "close") { isOpen = false; }
    else if (d.sb === "context" && d.context) { pageContext = d.context; send({ type: "context", context: pageContext }); }
    else if (d.sb === "identify" && d.identity) {
      identity = d.identity.jwt ? { jwt: String(d.identity.jwt) }
        : { user_id: String(d.identity.user_id || ""), user_hash: String(d.identity.user_hash || "") };
      var p = {}; ["name", "email", "phone"].forEach(function (k) { if (d.identity[k]) p[k] = String(d.identity[k]); });
      profile = p; halted = false;
      if (ws) ws.close(); else connect();
    }
  });
  $("close").addEventListener("click", function () { toParent({ sb: "close" }); });

  function send(o) { if (ws && connected) ws.send(JSON.stringify(o)); }

  // One socket at a time: a second one (opening the chat during a reconnect wait) would send
  // the pending messages twice and pile up sockets.
  function connect() {
    if (halted || (ws && (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN))) return;
    clearTimeout(reconnectTimer); reconnectTimer = null;
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + base + "/ws";
    var sock = new WebSocket(url);
    ws = sock;
    sock.onopen = function () {
      backoff = 1000;
      // A visit is a browser-tab session: counted once, however many pages it spans.
      if (newVisit) { try { if (sessionStorage.getItem("sb_visit")) newVisit = false; else sessionStorage.setItem("sb_visit", "1"); } catch (e) { } }
      var hello = { type: "hello", last_seq: lastSeq, context: pageContext, new_visit: newVisit };
      if (token) hello.token = token;
      if (identity) hello.identity = identity;
      if (profile.name || profile.email || profile.phone) hello.profile = profile;
      sock.send(JSON.stringify(hello));
    };
    sock.onmessage = function (e) { if (ws !== sock) return; var f; try { f = JSON.parse(e.data); } catch (x) { return; } onFrame(f); };
    sock.onclose = function () {
      if (ws !== sock) return;
      connected = false; ws = null;
      if (halted) return;
      status(t("offline"));
      clearTimeout(reconnectTimer); reconnectTimer = setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 30000);
    };
  }

  // Another visitor on this page now (the site identified its user, or the token was refused):
  // nothing shown or counted so far belongs to them; the server sends their log from the start.
  function resetVisitor() {
    seen = {}; lastSeq = 0; readSent = 0; deliveredSent = 0; lastOut = 0; agentRead = 0; unread = 0;
    log.querySelectorAll("li.msg").forEach(function (li) { if (!li.dataset.cid || li.dataset.seq) li.remove(); });
  }
  function agentTyping(on) {
    clearTimeout(agentTypingTimer);
    typingEl.hidden = !on; typingEl.textContent = on ? t("typing") : "";
    // An indicator nobody turns off (the agent's tab closed) ends by itself.
    if (on) agentTypingTimer = setTimeout(function () { agentTyping(false); }, 30000);
  }

  function onFrame(f) {
    switch (f.type) {
      case "welcome":
        newVisit = false;
        var vid = f.visitor && f.visitor.id;
        if (visitorId && vid && vid !== visitorId) resetVisitor();
        visitorId = vid || visitorId;
        agentTyping(false);
        if (f.token) { token = f.token; try { localStorage.setItem(KEY, token); } catch (e) { } }
        cfg = f.config || {}; agentRead = f.agent_read_seq || 0;
        profile = (f.visitor && f.visitor.profile) || profile;
        if (cfg.title) $("title").textContent = cfg.title;
        if (/^#[0-9a-f]{3,8}$/i.test(cfg.color || "")) document.documentElement.style.setProperty("--c", cfg.color);
        hours(f.hours || { open: true });
        if (cfg.greeting && !$("greeting")) {
          var g = el("li", "greeting", cfg.greeting); g.id = "greeting"; log.insertBefore(g, log.firstChild);
        }
        break;
      case "synced":
        // Everything up to last_seq has been sent to us; resume from the highest seq with no gap.
        lastSeq = Math.max(lastSeq, f.last_seq || 0); advance();
        connected = true;
        // Replayed agent messages arrived before the socket counted as connected.
        if (lastOut > deliveredSent) { deliveredSent = lastOut; send({ type: "delivered", seq: lastOut }); }
        // Messages typed while offline (or not yet acknowledged) go again; the server dedupes.
        pending.forEach(function (p) { ws.send(JSON.stringify(p.frame)); });
        prechat();
        markRead();
        break;
      case "message": addMessage(f); break;
      case "ack": ack(f); break;
      case "typing": agentTyping(!!f.on); break;
      case "read": agentRead = Math.max(agentRead, f.seq || 0); receipts(); break;
      case "notice":
        var text = f.text || t("away");
        if (f.email) text += "\n" + t("away_email");
        showNotice(text);
        break;
      case "slow_down":
        err.textContent = t("slow", { s: f.retry_after || 1 });
        if (f.client_id) drop(f.client_id, true);
        break;
      case "profile": profile = f.profile || profile; break;
      case "error":
        if (f.code === "invalid_token") { token = null; try { localStorage.removeItem(KEY); } catch (e) { } resetVisitor(); }
        // The site's identity is refused: reconnecting would only be refused again.
        if (f.code === "identity_unverified" || f.code === "identity_required") halted = true;
        if (f.code === "prechat_required") { if (f.client_id) drop(f.client_id, true); prechat(true); break; }
        err.textContent = t("failed", { e: f.message || f.code });
        if (f.client_id) drop(f.client_id, false);
        break;
    }
  }

  function status(text) { $("status").textContent = text; }
  function showNotice(text) { var n = $("notice"); n.textContent = text; n.hidden = false; }
  function hours(h) {
    if (h.open) { status(t("online")); return; }
    var when = "";
    if (h.next_open) { try { when = new Date(h.next_open).toLocaleString(lang, { weekday: "short", hour: "numeric", minute: "2-digit" }); } catch (e) { } }
    status(t("away") + (when ? " · " + t("back", { t: when }) : ""));
    if (cfg.away_message) showNotice(cfg.away_message);
  }

  // Pre-chat form: shown until the required fields are known.
  function prechat(force) {
    var fields = cfg.prechat || [];
    var missing = fields.filter(function (f) { return f.required && !profile[f.name]; });
    var form2 = $("prechat");
    if (!missing.length && !force) { form2.hidden = true; return; }
    if (!form2.hidden) return;
    var box = $("prechat-fields"); box.textContent = "";
    fields.forEach(function (f) {
      var id = "pc-" + f.name, l = document.createElement("label"), i = document.createElement("input");
      l.htmlFor = id; l.textContent = t(f.name) + (f.required ? " *" : " " + t("optional"));
      i.id = id; i.name = f.name; i.required = !!f.required;
      i.type = f.name === "email" ? "email" : f.name === "phone" ? "tel" : "text";
      i.autocomplete = f.name === "name" ? "name" : f.name === "email" ? "email" : "tel";
      if (profile[f.name]) i.value = profile[f.name];
      box.appendChild(l); box.appendChild(i);
    });
    form2.hidden = false;
    var first = box.querySelector("input"); if (first) first.focus();
  }
  $("prechat").addEventListener("submit", function (e) {
    e.preventDefault();
    var p = {}, miss = [];
    (cfg.prechat || []).forEach(function (f) {
      var v = $("pc-" + f.name).value.trim();
      if (v) p[f.name] = v; else if (f.required) miss.push(t(f.name));
    });
    if (miss.length) { $("prechat-error").textContent = t("required", { f: miss.join(", ") }); return; }
    $("prechat-error").textContent = "";
    for (var k in p) profile[k] = p[k];
    send({ type: "profile", profile: p });
    $("prechat").hidden = true;
    input.focus();
  });

  // Rendering. Every string from the network goes through textContent / attributes only.
  function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; }

  function addMessage(m) {
    if (m.seq && (seen[m.seq] || m.seq <= 0)) return;
    if (m.seq) { seen[m.seq] = true; advance(); }
    if (m.client_id) {
      var mine = document.querySelector('[data-cid="' + CSS.escape(m.client_id) + '"]');
      if (mine) { mine.dataset.seq = m.seq; meta(mine, t("sent")); return; }
    }
    var li = el("li", "msg " + (m.direction === "in" ? "in" : "out"));
    li.dataset.seq = m.seq || "";
    li.appendChild(el("span", "sr", m.direction === "in" ? t("you") + ": " : t("agent") + ": "));
    (m.parts && m.parts.length ? m.parts : [{ type: "text", text: m.text || "" }]).forEach(function (p) { li.appendChild(part(p, m)); });
    li.appendChild(el("span", "meta", m.at ? new Date(m.at).toLocaleTimeString(lang, { hour: "numeric", minute: "2-digit" }) : ""));
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
    if (m.direction === "out") {
      agentTyping(false);
      if (!isOpen || document.hidden) { unread++; toParent({ sb: "unread", count: unread }); }
      if (m.seq > lastOut) lastOut = m.seq;
      if (connected && m.seq > deliveredSent) { deliveredSent = m.seq; send({ type: "delivered", seq: m.seq }); }
      markRead();
    }
    receipts();
  }

  // lastSeq: the highest seq with every earlier one seen, so a reconnect never skips a message
  // that arrived out of order.
  function advance() { while (seen[lastSeq + 1]) lastSeq++; }

  function meta(li, text) { var mt = li.querySelector(".meta"); if (mt) mt.textContent = text; }

  function receipts() {
    var mine = log.querySelectorAll(".msg.in");
    for (var i = 0; i < mine.length; i++) {
      var s = +mine[i].dataset.seq;
      if (s && s <= agentRead) meta(mine[i], t("read"));
    }
  }

  function markRead() {
    if (!isOpen || document.hidden || !connected) return;
    unread = 0; toParent({ sb: "unread", count: 0 });
    if (lastSeq > readSent) { readSent = lastSeq; send({ type: "read", seq: lastSeq }); }
  }
  document.addEventListener("visibilitychange", markRead);

  function actionButton(a, m, kind) {
    if (a.type === "link" && a.url && /^https?:\/\//i.test(a.url)) {
      var link = el("a", null, a.title); link.href = a.url; link.target = "_blank"; link.rel = "noopener noreferrer"; return link;
    }
    var b = el("button", null, a.title); b.type = "button";
    b.addEventListener("click", function () {
      sendParts([{ type: "interaction", kind: kind, payload: a.payload || a.id || a.title, title: a.title, source_message_id: m.id }]);
      if (kind === "quick_reply") b.parentNode.querySelectorAll("button").forEach(function (x) { x.disabled = true; });
    });
    return b;
  }

  function card(c, m) {
    var d = el("div", "card");
    var src = c.image_url || c.url;
    if (src && /^https?:\/\//i.test(src)) { var img = el("img"); img.src = src; img.alt = c.title || ""; d.appendChild(img); }
    var ct = el("div", "ct"); ct.appendChild(el("h3", null, c.title || "")); if (c.subtitle) ct.appendChild(el("p", null, c.subtitle));
    d.appendChild(ct);
    if (c.actions && c.actions.length) {
      var acts = el("div", "actions"); c.actions.forEach(function (a) { acts.appendChild(actionButton(a, m, "button_reply")); }); d.appendChild(acts);
    }
    return d;
  }

  function part(p, m) {
    var b = el("div", "bubble");
    switch (p.type) {
      case "text": b.textContent = p.text || ""; break;
      case "media":
        if (p.url && p.kind === "image" && /^(https?:\/\/|\/)/i.test(p.url)) {
          var img = el("img"); img.src = p.url; img.alt = p.caption || p.filename || t("image"); b.appendChild(img);
        } else if (p.url && /^(https?:\/\/|\/)/i.test(p.url)) {
          var a = el("a", null, p.filename || p.caption || p.mime_type || "file"); a.href = p.url; a.target = "_blank"; a.rel = "noopener noreferrer"; a.download = "";
          b.appendChild(a);
        }
        if (p.caption) b.appendChild(el("div", null, p.caption));
        break;
      case "buttons": case "quick_replies":
        b.appendChild(el("div", null, p.text || ""));
        var acts = el("div", "actions");
        (p.actions || p.options || []).forEach(function (a) { acts.appendChild(actionButton(a, m, p.type === "buttons" ? "button_reply" : "quick_reply")); });
        b.appendChild(acts);
        break;
      case "card": b.className = ""; b.appendChild(card(p, m)); break;
      case "carousel":
        b.className = "carousel"; b.setAttribute("role", "group");
        (p.cards || []).forEach(function (c) { b.appendChild(card(c, m)); });
        break;
      case "list":
        b.classList.add("list");
        if (p.header) b.appendChild(el("strong", null, p.header));
        b.appendChild(el("div", null, p.text || ""));
        (p.sections || []).forEach(function (s) {
          if (s.title) b.appendChild(el("h3", null, s.title));
          var acts2 = el("div", "actions");
          (s.rows || []).forEach(function (r) {
            var btn = actionButton({ id: r.id, title: r.title, payload: r.id }, m, "list_reply");
            if (r.description) btn.appendChild(el("small", null, r.description));
            acts2.appendChild(btn);
          });
          b.appendChild(acts2);
        });
        break;
      case "interaction": b.textContent = p.title || p.payload || ""; break;
      default: b.textContent = m.text || "";
    }
    return b;
  }

  // Sending.
  function cid() { return "c" + Date.now().toString(36) + (++myTurn) + Math.random().toString(36).slice(2, 8); }
  function sendParts(parts, text) {
    var id = cid(), frame = { type: "message", client_id: id };
    if (text != null) frame.text = text; else frame.parts = parts;
    pending.push({ id: id, frame: frame });
    var li = el("li", "msg in"); li.dataset.cid = id;
    li.appendChild(el("span", "sr", t("you") + ": "));
    var shown = text != null ? [{ type: "text", text: text }] : parts.map(function (p) {
      return p.type === "interaction" ? { type: "text", text: p.title || p.payload } : p;
    });
    shown.forEach(function (p) { li.appendChild(part(p, {})); });
    li.appendChild(el("span", "meta", t("sending")));
    log.appendChild(li); log.scrollTop = log.scrollHeight;
    err.textContent = "";
    send(frame);
    halted = false;
    if (!ws) connect();
  }
  function ack(f) {
    pending = pending.filter(function (p) { return p.id !== f.client_id; });
    var li = document.querySelector('[data-cid="' + CSS.escape(f.client_id) + '"]');
    if (f.seq) { seen[f.seq] = true; advance(); if (li) li.dataset.seq = f.seq; }
    if (li) meta(li, t("sent"));
    receipts();
  }
  function drop(id, keepText) {
    pending = pending.filter(function (p) { return p.id !== id; });
    var li = document.querySelector('[data-cid="' + CSS.escape(id) + '"]');
    if (li) { if (keepText && !input.value) { var b = li.querySelector(".bubble"); if (b) input.value = b.textContent; } li.remove(); }
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    if (cfg.max_text_length && text.length > cfg.max_text_length) text = text.slice(0, cfg.max_text_length);
    input.value = "";
    stopTyping();
    sendParts(null, text);
    input.focus();
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit ? form.requestSubmit() : form.submit(); }
  });
  input.addEventListener("input", function () {
    if (!typingOn) { typingOn = true; send({ type: "typing", on: true }); }
    clearTimeout(typingTimer); typingTimer = setTimeout(stopTyping, 3000);
  });
  function stopTyping() { clearTimeout(typingTimer); if (typingOn) { typingOn = false; send({ type: "typing", on: false }); } }

  $("file").addEventListener("change", function () {
    var f = this.files && this.files[0]; this.value = "";
    if (!f) return;
    var types = cfg.upload_types || [];
    if (types.length && types.indexOf(f.type) < 0) { err.textContent = t("badType"); return; }
    if (cfg.upload_max_bytes && f.size > cfg.upload_max_bytes) { err.textContent = t("tooBig"); return; }
    if (!token) { err.textContent = t("upload"); return; }
    fetch(base + "/upload", { method: "POST", body: f, headers: { "Authorization": "Bearer " + token, "Content-Type": f.type, "X-Filename": encodeURIComponent(f.name) } })
      .then(function (r) { return r.json().then(function (j) { if (!r.ok) throw new Error(j.detail || r.status); return j; }); })
      .then(function (j) { sendParts([{ type: "media", media_id: j.media_id, url: j.url, kind: f.type.indexOf("image/") === 0 ? "image" : "file", filename: f.name }]); })
      .catch(function (e2) { err.textContent = t("upload") + " " + e2.message; });
  });

  // Connect at once only for a returning visitor (unread badge); a new one gets storage only
  // when they open the chat.
  if (token) connect();
  toParent({ sb: "ready" });
})();
