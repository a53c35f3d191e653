/*! sluice.js: first-party analytics for a sluice collector, with the analytics.js API. */
(function (w, d) {
  'use strict';
  var VERSION = '1.0.0';
  var stub = w.analytics;
  if (stub && stub.sluice) return; // already running on this page

  var BATCH_AT = 10; // send when this many events wait,
  var FLUSH_MS = 1000; // or this long after one was queued
  var MAX_BODY = 450000; // bytes a request (the server takes 512,000)
  var MAX_KEEPALIVE = 60000; // bytes a keepalive request (64 KiB may be in flight)
  var MAX_QUEUE = 1000; // events kept; the oldest give way
  var MAX_AGE = 7 * 864e5; // unsent this long: given up
  var MAX_WAIT = 300000; // the longest Retry-After obeyed
  var ANON = 'ajs_anonymous_id', UID = 'ajs_user_id', TRAITS = 'ajs_user_traits';
  var nav = w.navigator || {}, loc = w.location;

  // ------------------------------------------------------------ helpers

  function isObj(v) { return v !== null && typeof v == 'object' && !Array.isArray(v); }
  function obj(v) { return isObj(v) ? v : {}; }
  function str(v) { return v == null || v === '' ? null : String(v); }
  function now() { return Date.now(); }
  function assign(to, from) {
    for (var k in from) if (Object.prototype.hasOwnProperty.call(from, k)) to[k] = from[k];
    return to;
  }
  function warn(msg) { if (w.console) console.warn('sluice.js: ' + msg); }

  function uuid() {
    var c = w.crypto, b = new Uint8Array(16), h = '', i;
    if (c && c.randomUUID) return c.randomUUID();
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (i = 0; i < 16; i++) b[i] = Math.random() * 256;
    b[6] = (b[6] & 15) | 64; // version 4
    b[8] = (b[8] & 63) | 128; // RFC 4122 variant
    for (i = 0; i < 16; i++) h += (i == 4 || i == 6 || i == 8 || i == 10 ? '-' : '') + (b[i] + 256).toString(16).slice(1);
    return h;
  }

  // The script's own folder: `<host>/sluice.js` gives `<host>`, so one paste is enough.
  var me = d.currentScript, all = d.getElementsByTagName('script'), i;
  for (i = all.length - 1; i >= 0 && !(me && me.src); i--) if (/\/sluice(\.min)?\.js([?#]|$)/.test(all[i].src)) me = all[i];
  var defaultHost = me && me.src ? me.src.split(/[?#]/)[0].replace(/\/[^/]*$/, '') : '';

  // ------------------------------------------------------------ first-party storage

  var mem = {}; // when localStorage is unavailable
  var cookieDomain = '';

  function lsGet(k) {
    var v;
    try { v = w.localStorage.getItem(k); } catch (e) { v = mem[k]; }
    if (v == null) return null;
    try { return JSON.parse(v); } catch (e) { return v; } // a bare string
  }
  function lsSet(k, v) { // false when it could not be stored
    var s = v == null ? null : JSON.stringify(v);
    try {
      if (s == null) w.localStorage.removeItem(k);
      else w.localStorage.setItem(k, s);
      return true;
    } catch (e) {
      mem[k] = s;
      return false;
    }
  }
  function cookieGet(k) {
    var m = d.cookie.match(new RegExp('(?:^|;\\s*)' + k + '=([^;]+)')), v = m && m[1];
    if (!v) return null;
    try {
      v = decodeURIComponent(v);
      if (v.charAt(0) == '"') v = JSON.parse(v); // analytics.js wrote JSON strings
    } catch (e) {}
    return str(v);
  }
  function cookieSet(k, v) {
    d.cookie = k + '=' + (v == null ? '' : encodeURIComponent(v)) + '; path=/; max-age=' + (v == null ? 0 : 31536000) +
      '; SameSite=Lax' + (loc.protocol == 'https:' ? '; Secure' : '') + (cookieDomain ? '; domain=' + cookieDomain : '');
  }

  // anonymousId: cookie + localStorage; userId: localStorage + cookie; traits: localStorage.
  var user = {
    anonymousId: function (id) {
      if (arguments.length) {
        cookieSet(ANON, (id = str(id)));
        lsSet(ANON, id);
        return id;
      }
      return cookieGet(ANON) || str(lsGet(ANON)) || user.anonymousId(uuid());
    },
    id: function (id) {
      if (arguments.length) {
        cookieSet(UID, (id = str(id)));
        lsSet(UID, id);
        return id;
      }
      return str(lsGet(UID)) || cookieGet(UID);
    },
    traits: function (t) {
      if (arguments.length) lsSet(TRAITS, t == null ? null : obj(t));
      return obj(lsGet(TRAITS));
    }
  };

  // ------------------------------------------------------------ events

  function pageInfo() {
    var url = loc.href.split('#')[0], path = loc.pathname, link = d.querySelector('link[rel="canonical"]'), u;
    try {
      u = new URL(link.getAttribute('href'), loc.href);
      url = u.href.split('#')[0] + (u.search ? '' : loc.search);
      path = u.pathname;
    } catch (e) {} // no canonical link
    return { path: path, referrer: d.referrer, search: loc.search, title: d.title, url: url };
  }

  function campaign() {
    var out, parts = loc.search.slice(1).split('&'), i, kv, k;
    for (i = 0; i < parts.length; i++) {
      kv = parts[i].split('=');
      try {
        k = decodeURIComponent(kv[0]).slice(4);
        if (kv[0].indexOf('utm_') == 0 && k) (out = out || {})[k == 'campaign' ? 'name' : k] = decodeURIComponent((kv[1] || '').replace(/\+/g, ' '));
      } catch (e) {}
    }
    return out;
  }

  var replayAt = null; // when a queued call being replayed was made

  function make(type, fields, opts) {
    opts = obj(opts);
    var ctx = {
      page: pageInfo(),
      userAgent: nav.userAgent,
      locale: nav.language || nav.userLanguage,
      library: { name: 'sluice.js', version: VERSION }
    };
    var c = campaign(), t = new Date(opts.timestamp || replayAt || now()), uid = user.id(), k;
    if (c) ctx.campaign = c;
    try { ctx.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) {}
    assign(ctx, obj(opts.context));
    if (isNaN(t)) t = new Date();
    var e = {
      type: type,
      messageId: uuid(),
      timestamp: t.toISOString(),
      anonymousId: str(opts.anonymousId) || user.anonymousId(),
      context: ctx,
      integrations: obj(opts.integrations)
    };
    if (uid) e.userId = uid;
    for (k in fields) if (fields[k] !== undefined) e[k] = fields[k];
    return e;
  }

  // Builders: the call's arguments (callback removed) -> the event.
  var build = {
    page: function (a) { // ([category], [name], [properties], [options])
      if (isObj(a[0])) a = [null, null].concat(a);
      else if (typeof a[1] != 'string') a = [null].concat(a);
      var p = pageInfo(), props = assign({}, p), cat = str(a[0]), name = str(a[1]);
      assign(props, obj(a[2]));
      if (name) props.name = name;
      if (cat) props.category = cat;
      return make('page', { name: name || undefined, category: cat || undefined, properties: props }, a[3]);
    },
    identify: function (a) { // ([userId], [traits], [options])
      if (isObj(a[0])) a = [null].concat(a);
      var id = str(a[0]), prev = user.id(), t = obj(a[1]);
      if (id && prev && id != prev) user.anonymousId(uuid()); // another person on this browser
      else t = assign(user.traits(), t);
      if (id) user.id(id);
      user.traits(t);
      return make('identify', { traits: t }, a[2]);
    },
    track: function (a) {
      if (!str(a[0])) return warn('track needs an event name');
      return make('track', { event: String(a[0]), properties: obj(a[1]) }, a[2]);
    },
    group: function (a) {
      if (!str(a[0])) return warn('group needs a group id');
      return make('group', { groupId: String(a[0]), traits: obj(a[1]) }, a[2]);
    },
    alias: function (a) { // (userId, [previousId], [options])
      if (!str(a[0])) return warn('alias needs a user id');
      return make('alias', { userId: String(a[0]), previousId: str(a[1]) || user.id() || user.anonymousId() }, a[2]);
    }
  };

  // ------------------------------------------------------------ the queue and delivery

  var key = null, endpoint = '', qkey = '';
  var q = []; // waiting: {t: queued at, e: event}
  var fly = {}; // messageIds in a request now
  var sending = 0; // ordinary requests under way (at most one)
  var blockedUntil = 0; // backoff or Retry-After
  var attempt = 0; // failures in a row
  var limited = false; // the last failure was a 429
  var timer = 0, timerAt = 0, due = false;

  function fresh(item) { return item && isObj(item.e) && item.e.messageId && now() - item.t < MAX_AGE; }
  function saved() {
    var s = lsGet(qkey);
    return Array.isArray(s) ? s.filter(fresh) : [];
  }
  // Read-modify-write of the stored queue (other tabs share it).
  function save(change) {
    var s = change(saved()).slice(-MAX_QUEUE);
    while (!lsSet(qkey, s) && s.length > 1) s = s.slice(s.length >> 1); // full: drop the oldest half
  }
  function forget(ids) {
    var gone = {};
    for (var i = 0; i < ids.length; i++) gone[ids[i]] = 1;
    function keep(item) { return !gone[item.e.messageId]; }
    q = q.filter(keep);
    save(function (s) { return s.filter(keep); });
  }

  function enqueue(e) {
    var item = { t: now(), e: e };
    try { JSON.stringify(e); } catch (err) { return warn('not JSON: ' + err); }
    q.push(item);
    q = q.slice(-MAX_QUEUE);
    save(function (s) { return s.concat(item); });
    if (waiting() >= BATCH_AT) flush();
    else schedule(FLUSH_MS);
  }

  function waiting() {
    for (var n = 0, i = 0; i < q.length; i++) if (!fly[q[i].e.messageId]) n++;
    return n;
  }

  function schedule(ms) {
    var at = Math.max(now() + ms, blockedUntil);
    if (timer && timerAt <= at) return;
    clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(function () {
      timer = 0;
      due = true;
      flush();
    }, at - now());
  }

  function bytes(s) { return w.TextEncoder ? new TextEncoder().encode(s).length : s.length * 3; }

  // Waiting events, oldest first, up to `limit` bytes.
  function pick(limit) {
    var out = [], size = 100, i, item, json, n, old = [];
    for (i = 0; i < q.length; i++) {
      item = q[i];
      if (fly[item.e.messageId]) continue;
      json = JSON.stringify(item.e);
      n = bytes(json) + 1;
      if (!fresh(item) || (size + n > limit && !out.length && limit == MAX_BODY)) {
        old.push(item.e.messageId); // too old, or too large for any request
        continue;
      }
      if (size + n > limit) {
        if (out.length) break; // the next request takes it
        continue; // too large for keepalive: an ordinary request takes it
      }
      size += n;
      out.push({ id: item.e.messageId, json: json });
    }
    if (old.length) forget(old);
    out.size = size;
    return out;
  }

  function flush(hide) {
    if (!key || !q.length || (sending && !hide)) return;
    if (now() < blockedUntil) return schedule(0); // offline: back off until `online`
    do {
      var batch = pick(hide ? MAX_KEEPALIVE : MAX_BODY);
      if (!batch.length) return;
      post(batch, hide);
    } while (hide); // on page hide: everything, in chunks
  }

  function waitOf(r) { // Retry-After (or X-RateLimit-Reset): seconds or an HTTP date
    var h = r.headers.get('Retry-After') || r.headers.get('X-RateLimit-Reset');
    var ms = /^\s*\d+(\.\d+)?\s*$/.test(h) ? h * 1000 : Date.parse(h) - now();
    return isNaN(ms) ? null : Math.min(Math.max(ms, 0), MAX_WAIT);
  }

  function backoff(n) { // exponential, half of it jitter: 0.5-1 s, 1-2 s, ... 30-60 s
    var full = Math.min(60000, 1000 * Math.pow(2, n));
    return full / 2 + Math.random() * full / 2;
  }

  function post(batch, hide) {
    var ids = [], parts = [];
    batch.forEach(function (b) {
      ids.push(b.id);
      parts.push(b.json);
      fly[b.id] = 1;
    });
    if (!hide) sending++;
    due = false;

    function done(status, wait) {
      ids.forEach(function (id) { delete fly[id]; });
      if (!hide) sending--;
      if (status && (status < 400 || (status < 500 && status != 408 && status != 429))) {
        // stored, or refused for good (write key, origin, malformed)
        if (status >= 400) warn('the collector refused ' + ids.length + ' events: ' + status);
        forget(ids);
        attempt = 0;
        limited = false;
      } else { // 408, 429, 5xx, network: later
        limited = status == 429 && wait != null;
        blockedUntil = Math.max(blockedUntil, now() + (limited ? wait + Math.random() * 100 : backoff(attempt++)));
      }
      if (waiting()) schedule(due || waiting() >= BATCH_AT ? 0 : FLUSH_MS);
    }

    try {
      w.fetch(endpoint, {
        method: 'POST',
        headers: { 'Content-Type': 'text/plain' }, // CORS-simple: no preflight
        body: '{"batch":[' + parts.join(',') + '],"sentAt":"' + new Date().toISOString() + '","writeKey":' + JSON.stringify(key) + '}',
        keepalive: batch.size <= MAX_KEEPALIVE, // so it outlives the page if that is left now
        credentials: 'omit'
      }).then(function (r) { done(r.status, r.status == 429 ? waitOf(r) : null); }, function () { done(0); });
    } catch (e) {
      done(0);
    }
  }

  // ------------------------------------------------------------ the API

  var A = {}, pending = [], readies = [], loaded = false; // pending: calls before load

  function api(name, run) {
    return function () {
      var a = [].slice.call(arguments), cb, e;
      if (!loaded) {
        pending.push({ m: name, a: a, t: replayAt || now() });
        return A;
      }
      if (typeof a[a.length - 1] == 'function') cb = a.pop();
      if ((e = run(a))) enqueue(e);
      if (cb) setTimeout(function () { cb(e); }, 0);
      return A;
    };
  }

  for (var m in build) A[m] = api(m, build[m]);

  A.reset = api('reset', function () {
    user.id(null);
    user.traits(null);
    user.anonymousId(null);
  });

  A.user = function () { return user; };

  A.ready = function (cb) {
    if (typeof cb == 'function') loaded ? setTimeout(cb, 0) : readies.push(cb);
    return A;
  };

  A.flush = function () { // sends what waits now
    due = true;
    flush();
    return A;
  };

  A.load = function (writeKey, options) {
    if (key || !writeKey) return A;
    options = obj(options);
    key = String(writeKey);
    cookieDomain = options.cookieDomain || '';
    var host = String(options.host || defaultHost).replace(/\/+$/, '');
    if (/^\/\//.test(host)) host = loc.protocol + host;
    else if (host && !/^https?:\/\//.test(host)) host = 'https://' + host;
    endpoint = host + '/v1/batch';
    qkey = 'sluice_queue:' + key;
    q = saved(); // what a closed page left unsent, this page sends
    user.anonymousId(user.anonymousId()); // the cookie's year starts again

    d.addEventListener('visibilitychange', function () { if (d.visibilityState == 'hidden') flush(true); });
    w.addEventListener('pagehide', function () { flush(true); });
    w.addEventListener('online', function () {
      if (!limited) blockedUntil = attempt = 0;
      flush();
    });

    loaded = A.initialized = true;
    var calls = pending;
    pending = [];
    calls.forEach(function (c) {
      replayAt = c.t;
      A[c.m].apply(A, c.a);
    });
    replayAt = null;
    if (q.length) flush();
    readies.forEach(function (cb) { setTimeout(cb, 0); });
    return A;
  };

  // analytics.push(['track', 'Clicked']): the loader's queue holds calls in this shape
  A.push = function (c) {
    if (c && typeof A[c[0]] == 'function') {
      replayAt = c.t || null;
      A[c[0]].apply(A, [].slice.call(c, 1));
      replayAt = null;
    }
    return A;
  };

  A.sluice = A.VERSION = VERSION;
  w.analytics = A;

  // Replay, in order, what the loader queued before this script arrived.
  if (Array.isArray(stub)) {
    stub.forEach(A.push);
    if (!key && stub._writeKey) A.load(stub._writeKey, stub._loadOptions);
  }
})(window, document);
