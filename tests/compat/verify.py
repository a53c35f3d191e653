#!/usr/bin/env python3
"""Admin-API helpers and the verifier of the real-client compatibility suite.

Standard library only (urllib). Subcommands, used by run.sh:

  wait-ready     --base URL [--pid PID] [--timeout S]
      Poll GET /readyz until it answers 200 (fails early if PID dies).
  create-sources --base URL --token T --out FILE NAME...
      POST /api/v1/sources {"name": NAME, "kind": "server"} for each NAME and
      write {NAME: {"id", "write_key"}} to FILE.
  check          --base URL --token T --sources FILE --since EPOCH
                 --manifest NAME=FILE ... [--timeout S]
      Poll GET /api/v1/sources/{id}/events until every call a driver recorded
      has arrived (or the deadline passes), then check every stored event
      against the driver's manifest. Prints one line per check and the
      summary line `compat: N passed, M failed`; exits 1 on any failure.
"""

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

# What each pinned client must put in context.library (checked on every event).
LIBRARIES = {
    "python": {"name": "analytics-python", "version": "2.4.0"},
    "node": {"name": "@segment/analytics-node", "version": "3.1.0"},
}
PEER_IP = "127.0.0.1"  # the drivers connect over loopback
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TIMESTAMP_FIELDS = ("receivedAt", "sentAt", "originalTimestamp", "timestamp")
NEAR_S = 5.0  # "within a few seconds"
FORMULA_TOLERANCE_S = 0.0025  # ms rounding of sentAt/receivedAt on top of exact arithmetic


# ---------------------------------------------------------------- HTTP


def http(method, url, token=None, body=None, timeout=10):
    """Return (status, parsed JSON or raw text, raw text). Never raises on HTTP status."""
    data = None
    headers = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return status, parsed, text


def short(v, n=300):
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)
    return s if len(s) <= n else s[:n] + "…"


def die_setup(msg):
    print("FAIL setup: " + msg)
    print("compat: 0 passed, 1 failed")
    sys.exit(1)


# ---------------------------------------------------------------- setup commands


def cmd_wait_ready(a):
    deadline = time.monotonic() + a.timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if a.pid:
            try:
                os.kill(a.pid, 0)
            except OSError:
                die_setup("sluice (pid %d) exited before /readyz answered 200 (last: %s)" % (a.pid, last))
        try:
            status, _, text = http("GET", a.base + "/readyz", timeout=2)
            if status == 200:
                print("ready: GET /readyz -> 200")
                return 0
            last = "%d %s" % (status, short(text, 120))
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.1)
    die_setup("GET /readyz did not answer 200 within %.0f s (last: %s)" % (a.timeout, last))


def cmd_create_sources(a):
    out = {}
    for name in a.names:
        req = {"name": name, "kind": "server"}
        try:
            status, body, text = http("POST", a.base + "/api/v1/sources", a.token, req)
        except (urllib.error.URLError, OSError) as e:
            die_setup("POST /api/v1/sources %s: %s" % (json.dumps(req), e))
        if status != 201:
            die_setup("POST /api/v1/sources %s -> %d %s (want 201)" % (json.dumps(req), status, short(text)))
        missing = [k for k in ("id", "name", "kind", "write_key", "created_at") if not isinstance(body, dict) or k not in body]
        if missing or body["name"] != name or body["kind"] != "server" or not body["write_key"]:
            die_setup("POST /api/v1/sources %s -> 201 with unexpected body %s" % (json.dumps(req), short(text)))
        out[name] = {"id": str(body["id"]), "write_key": body["write_key"]}
        print("source %s: id %s" % (name, body["id"]))
    with open(a.out, "w") as f:
        json.dump(out, f)
    return 0


# ---------------------------------------------------------------- checking


def parse_ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def same(a, b):
    """Strict JSON equality: true is not 1, 1 equals 1.0, dict key sets must match."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def fetch_events(base, token, source_id, limit):
    url = "%s/api/v1/sources/%s/events?limit=%d" % (base, source_id, limit)
    status, body, text = http("GET", url, token)
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise RuntimeError("GET %s -> %d %s" % (url, status, short(text)))
    return body


def check_event(call, matches, source_id, library, since, until):
    """Return a list of problems with the stored copies `matches` of one call."""
    p = []
    if len(matches) != 1:
        p.append("stored %d times, want exactly once" % len(matches))
    if not matches:
        return p
    rec = matches[0]
    if rec.get("source_id") != source_id:
        p.append("record source_id %r, want %r" % (rec.get("source_id"), source_id))
    if not isinstance(rec.get("seq"), int) or isinstance(rec.get("seq"), bool):
        p.append("record seq %r is not an integer" % (rec.get("seq"),))
    if not rec.get("received_at"):
        p.append("record has no received_at")
    ev = rec.get("event")
    if not isinstance(ev, dict):
        return p + ["record.event is %s, not an object" % short(ev)]

    for k, want in call["expect"].items():
        if k not in ev:
            p.append("%s missing (want %s)" % (k, short(want)))
        elif not same(ev[k], want):
            p.append("%s = %s, want %s" % (k, short(ev[k]), short(want)))
    for k in call["absent"]:
        if k in ev:
            p.append("%s present (%s), want it left out" % (k, short(ev[k])))

    if not ev.get("messageId") or ev.get("messageId") != call["messageId"]:
        p.append("messageId %r, want %r" % (ev.get("messageId"), call["messageId"]))
    if "writeKey" in ev:
        p.append("writeKey key present in stored event")
    ctx = ev.get("context")
    if not isinstance(ctx, dict):
        p.append("context missing or not an object: %s" % short(ctx))
        ctx = {}
    if "writeKey" in ctx:
        p.append("writeKey key present in stored context")
    if not same(ctx.get("library"), library):
        p.append("context.library = %s, want %s" % (short(ctx.get("library")), short(library)))
    if ctx.get("ip") != PEER_IP:
        p.append("context.ip = %r, want %r (filled from the peer)" % (ctx.get("ip"), PEER_IP))
    if not same(ev.get("integrations"), {}):
        p.append("integrations = %s, want {} as sent" % short(ev.get("integrations")))

    t = {}
    for k in TIMESTAMP_FIELDS:
        v = ev.get(k)
        if not isinstance(v, str) or not TS_RE.match(v):
            p.append("%s = %r, want YYYY-MM-DDTHH:MM:SS.mmmZ" % (k, v))
        else:
            t[k] = parse_ts(v)
    if len(t) < len(TIMESTAMP_FIELDS):
        return p

    skew = call["clockSkewSeconds"]
    if not since - 2 <= t["receivedAt"] <= until + 2:
        p.append("receivedAt %s is outside this run's wall-clock window" % ev["receivedAt"])
    if ev["originalTimestamp"] != call["clientTimestamp"]:
        p.append("originalTimestamp %s, want the client's timestamp %s" % (ev["originalTimestamp"], call["clientTimestamp"]))
    if call["explicitTimestamp"] and ev["originalTimestamp"] != call["explicitTimestamp"]:
        p.append("originalTimestamp %s, want the explicit timestamp %s" % (ev["originalTimestamp"], call["explicitTimestamp"]))
    want_ts = t["receivedAt"] - (t["sentAt"] - t["originalTimestamp"])
    if abs(t["timestamp"] - want_ts) > FORMULA_TOLERANCE_S:
        p.append(
            "timestamp %s != receivedAt - (sentAt - originalTimestamp) = %s (off by %.3f s)"
            % (ev["timestamp"], fmt(want_ts), t["timestamp"] - want_ts)
        )
    if abs(t["sentAt"] - skew - t["receivedAt"]) > NEAR_S:
        p.append("sentAt %s is not receivedAt %s + %d s client clock skew" % (ev["sentAt"], ev["receivedAt"], skew))
    if abs(t["timestamp"] - (t["originalTimestamp"] - skew)) > NEAR_S:
        p.append("timestamp %s is not within %ds of originalTimestamp - %d s skew" % (ev["timestamp"], NEAR_S, skew))
    if not call["explicitTimestamp"] and abs(t["timestamp"] - t["receivedAt"]) > NEAR_S:
        p.append("timestamp %s not within %ds of receivedAt %s" % (ev["timestamp"], NEAR_S, ev["receivedAt"]))
    return p


def fmt(epoch):
    dt = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def cmd_check(a):
    with open(a.sources) as f:
        sources = json.load(f)
    results = []  # (ok, line)

    def report(ok, name, problems=()):
        line = ("PASS " if ok else "FAIL ") + name
        if problems:
            line += ": " + "; ".join(problems)
        results.append(ok)
        print(line, flush=True)

    manifests = {}
    for spec in a.manifest:
        name, _, path = spec.partition("=")
        try:
            with open(path) as f:
                manifests[name] = json.load(f)
        except (OSError, ValueError) as e:
            manifests[name] = None
            report(False, "%s driver: no usable manifest (%s); the driver failed, see its output above" % (name, e))

    # Poll until every recorded messageId of every client is stored, or the deadline.
    deadline = time.monotonic() + a.timeout
    stored = {}
    poll_error = {}
    while True:
        missing = 0
        for name, m in manifests.items():
            if m is None:
                continue
            try:
                stored[name] = fetch_events(a.base, a.token, sources[name]["id"], a.limit)
                poll_error.pop(name, None)
            except (RuntimeError, urllib.error.URLError, OSError) as e:
                poll_error[name] = str(e)
                missing += 1
                continue
            have = {e.get("event", {}).get("messageId") for e in stored[name]["events"] if isinstance(e, dict)}
            missing += sum(1 for c in m["calls"] if c["messageId"] and c["messageId"] not in have)
        if missing == 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    until = time.time()

    for name, m in manifests.items():
        if m is None:
            continue
        source_id = sources[name]["id"]
        library = LIBRARIES[name]
        errs = list(m["errors"])
        if not same(m["library"], library):
            errs.append("driver loaded %s, want the pinned %s" % (short(m["library"]), short(library)))
        report(not errs, "%s client: %d calls sent without client-side errors" % (name, len(m["calls"])), errs)

        if name in poll_error:
            report(False, "%s events API" % name, [poll_error[name]])
            continue
        body = stored.get(name, {"events": [], "rejected": []})
        events = [e for e in body["events"] if isinstance(e, dict)]
        by_id = {}
        for e in events:
            mid = (e.get("event") or {}).get("messageId")
            by_id.setdefault(mid, []).append(e)

        for call in m["calls"]:
            if call["messageId"]:
                probs = check_event(call, by_id.get(call["messageId"], []), source_id, library, a.since, until)
            else:
                probs = ["the driver recorded no messageId for this call"]
            report(not probs, "%s %s (messageId %s)" % (name, call["label"], call["messageId"]), probs)

        probs = []
        want_ids = {c["messageId"] for c in m["calls"]}
        extra = [mid for mid in by_id if mid not in want_ids]
        if len(events) != len(m["calls"]):
            probs.append("%d events stored for the source, want %d" % (len(events), len(m["calls"])))
        if extra:
            probs.append("unexpected messageIds stored: %s" % short(extra))
        seqs = [e.get("seq") for e in events]
        if len(set(map(repr, seqs))) != len(seqs):
            probs.append("duplicate seq values: %s" % short(seqs))
        rejected = body.get("rejected")
        if rejected:
            probs.append("rejected events: %s" % short(rejected, 600))
        elif rejected is None:
            probs.append('response has no "rejected" list')
        report(not probs, "%s totals: every call stored once, nothing extra, nothing rejected" % name, probs)

    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    print("compat: %d passed, %d failed" % (passed, failed))
    return 1 if failed or not results else 0


# ---------------------------------------------------------------- delivery


def cio_identifiers(person):
    """sluice's identifier rules: cio_<id> -> cio_id, an email -> email, else id."""
    if person.startswith("cio_") and len(person) > 4:
        return {"cio_id": person[4:]}
    if "@" in person and "." in person.split("@", 1)[1]:
        return {"email": person}
    return {"id": person}


def expected_delivery(call, calls):
    """A predicate for the Customer.io op that `call` must become, and a description."""
    e = call["expect"]
    kind = e["type"]
    user = e.get("userId")
    if user is None:
        # An anonymous call goes to the person an earlier alias linked its anonymousId to.
        linked = [c["expect"]["userId"] for c in calls[: calls.index(call)]
                  if c["expect"]["type"] == "alias" and c["expect"].get("previousId") == e.get("anonymousId")]
        who = cio_identifiers(linked[-1]) if linked else {"anonymous_id": e.get("anonymousId")}
    else:
        who = cio_identifiers(user)

    def event_like(op, action, name):
        return (op.get("type") == "person" and op.get("action") == action and op.get("identifiers") == who
                and op.get("name") == name and isinstance(op.get("id"), str) and len(op["id"]) == 26
                and isinstance(op.get("timestamp"), int))

    if kind == "identify":
        email = (e.get("traits") or {}).get("email")
        return (lambda op: op.get("type") == "person" and op.get("action") == "identify"
                and op.get("identifiers") == who
                and (email is None or (op.get("attributes") or {}).get("email") == email),
                "person identify %s with traits.email" % who)
    reserved = {
        "Application Installed": "add_device", "Application Opened": "add_device",
        "Device Created or Updated": "add_device", "Application Uninstalled": "delete_device",
        "Device Deleted": "delete_device", "User Deleted": "delete",
        "User Suppressed": "suppress", "User Unsuppressed": "unsuppress",
    }
    if kind == "track" and e["event"] in reserved:
        action = reserved[e["event"]]

        def person_op(op):
            if op.get("type") != "person" or op.get("action") != action or op.get("identifiers") != who:
                return False
            if action == "add_device":
                d = op.get("device") or {}
                return bool(d.get("token")) and d.get("platform") in ("ios", "android")
            if action == "delete_device":
                return bool((op.get("device") or {}).get("token"))
            return True

        return (person_op, "%s for %s" % (action, who))
    if kind == "track":
        return (lambda op: event_like(op, "event", e["event"])
                and (op.get("attributes") or {}).keys() >= {k for k, v in (e.get("properties") or {}).items() if v is not None},
                "event %r for %s with a ULID id" % (e["event"], who))
    if kind == "page":
        name = (e.get("properties") or {}).get("url") or e.get("name")
        return (lambda op: event_like(op, "page", name), "page view %r for %s" % (name, who))
    if kind == "screen":
        return (lambda op: event_like(op, "screen", e["name"]), "screen view %r for %s" % (e["name"], who))
    if kind == "group":
        return (lambda op: op.get("type") == "object" and op.get("action") == "identify"
                and op.get("identifiers") == {"object_type_id": "1", "object_id": e["groupId"]}
                and (op.get("cio_relationships") or [{}])[0].get("identifiers") == who,
                "object %s related to %s" % (e["groupId"], who))
    known_before = [c for c in calls[: calls.index(call)] if c["expect"].get("userId") == e.get("previousId")]
    if kind == "alias" and known_before:
        # previousId is a known userId: a merge into the user (after the user's identify).
        return (lambda op: op.get("type") == "person" and op.get("action") == "merge"
                and op.get("primary") == who and op.get("secondary") == cio_identifiers(e["previousId"]),
                "merge of %s into %s" % (e["previousId"], who))
    if kind == "alias":
        return (lambda op: op.get("type") == "person" and op.get("action") == "identify"
                and op.get("identifiers") == who
                and (op.get("attributes") or {}).get("anonymous_id") == e["previousId"],
                "identify %s linking anonymous_id %s" % (who, e["previousId"]))
    return (lambda op: False, "an op for %s" % kind)


def cmd_create_destination(a):
    body = {"name": a.name, "type": "customerio",
            "config": {"site_id": "SITE_ID_TEST", "api_key": "API_KEY_TEST", "track_url": a.cio}}
    status, resp, text = http("POST", a.base + "/api/v1/destinations", a.token, body)
    if status != 201:
        die_setup("POST /api/v1/destinations -> %d %s (want 201)" % (status, short(text)))
    if "API_KEY_TEST" in text:
        die_setup("the API key was echoed back: %s" % short(text))
    print("destination %s: id %s -> %s" % (a.name, resp["id"], a.cio))
    return 0


def cmd_check_delivery(a):
    results = []

    def report(ok, name, problems=()):
        print(("PASS " if ok else "FAIL ") + name + ((": " + "; ".join(problems)) if problems else ""), flush=True)
        results.append(ok)

    manifests = {}
    for spec in a.manifest:
        name, _, path = spec.partition("=")
        try:
            with open(path) as f:
                manifests[name] = json.load(f)["calls"]
        except (OSError, ValueError, KeyError) as e:
            report(False, "%s delivery: no usable manifest (%s)" % (name, e))
    wanted = [(name, call, *expected_delivery(call, calls)) for name, calls in manifests.items() for call in calls]
    deadline = time.monotonic() + a.timeout
    while True:
        status, ops, text = http("GET", a.cio + "/_test/accepted")
        ops = ops if status == 200 and isinstance(ops, list) else []
        matched = {id(w): next((i for i, op in enumerate(ops) if w[2](op)), None) for w in wanted}
        if all(v is not None for v in matched.values()) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    for w in wanted:
        name, call, _, what = w
        report(matched[id(w)] is not None, "%s %s delivered to Customer.io as %s" % (name, call["label"], what),
               [] if matched[id(w)] is not None else ["not among the %d accepted ops" % len(ops)])
    for name, calls in manifests.items():
        main_user = next((c["expect"]["userId"] for c in calls if c["expect"]["type"] == "identify"), None)
        positions = [matched[id(w)] for w in wanted if w[0] == name and w[1]["expect"].get("userId") == main_user
                     and w[1]["expect"]["type"] != "group"]
        ok = None not in positions and positions == sorted(positions)
        report(ok, "%s: the user's operations arrived in the order they were sent" % name,
               [] if ok else ["accepted positions %s" % positions])
    ids = [op.get("id") for op in ops if op.get("action") in ("event", "page", "screen")]
    report(len(ids) == len(set(ids)), "no event delivered twice", [] if len(ids) == len(set(ids)) else ["duplicate ids"])
    status, requests, _ = http("GET", a.cio + "/_test/requests")
    bad = [r for r in (requests or []) if r.get("path", "").startswith("/api/v2/batch") and r.get("status") != 200]
    report(not bad, "every batch sluice sent passed the test server's validation",
           [short(r.get("response_body"), 300) for r in bad[:3]])
    passed = sum(1 for r in results if r)
    print("compat-delivery: %d passed, %d failed" % (passed, len(results) - passed))
    return 1 if passed != len(results) or not results else 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait-ready")
    w.add_argument("--base", required=True)
    w.add_argument("--pid", type=int)
    w.add_argument("--timeout", type=float, default=30)
    c = sub.add_parser("create-sources")
    c.add_argument("--base", required=True)
    c.add_argument("--token", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("names", nargs="+")
    d = sub.add_parser("create-destination")
    d.add_argument("--base", required=True)
    d.add_argument("--token", required=True)
    d.add_argument("--cio", required=True)
    d.add_argument("--name", default="cio-compat")
    cd = sub.add_parser("check-delivery")
    cd.add_argument("--cio", required=True)
    cd.add_argument("--timeout", type=float, default=30)
    cd.add_argument("--manifest", action="append", default=[])
    k = sub.add_parser("check")
    k.add_argument("--base", required=True)
    k.add_argument("--token", required=True)
    k.add_argument("--sources", required=True)
    k.add_argument("--since", type=float, required=True, help="epoch seconds when the run started")
    k.add_argument("--manifest", action="append", default=[], help="NAME=FILE")
    k.add_argument("--timeout", type=float, default=30)
    k.add_argument("--limit", type=int, default=100)
    a = ap.parse_args()
    return {
        "wait-ready": cmd_wait_ready,
        "create-sources": cmd_create_sources,
        "create-destination": cmd_create_destination,
        "check": cmd_check,
        "check-delivery": cmd_check_delivery,
    }[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
