#!/usr/bin/env python3
"""Drive the official segment-analytics-python client against a running sluice.

Usage: drive_python.py --host URL --write-key KEY --run-id ID --out MANIFEST.json

Makes every kind of call (identify, track, page, screen, group, alias, an
anonymous-only track, a track with an explicit back-dated timestamp, and a
track from a client whose clock runs an hour fast), flushes, shuts the client
down, and writes a manifest: for every call the messageId the client generated
and the fields the stored event must carry. verify.py checks the server
against that manifest. Exits non-zero if the client itself failed.
"""

import argparse
import json
import sys
import traceback
from datetime import datetime, timedelta, timezone

from segment.analytics import Client
from segment.analytics import request as segment_request
from segment.analytics.version import VERSION

CLOCK_SKEW_SECONDS = 3600  # the "skewed" client's clock runs this far ahead
SKEWED_EVENT_AGE_SECONDS = 30  # its explicit timestamp is this far in its own past
BACKDATE_SECONDS = 600  # the back-dated call happened this long ago


def utc_ms(dt):
    """The form sluice must store a client timestamp in: UTC, milliseconds, Z."""
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def whole_ms(dt):
    """Drop sub-millisecond digits (the client sends milliseconds only)."""
    return dt.replace(microsecond=(dt.microsecond // 1000) * 1000)


class _SkewedDatetime(datetime):
    """datetime whose now() runs CLOCK_SKEW_SECONDS ahead (a client with a fast clock)."""

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + timedelta(seconds=CLOCK_SKEW_SECONDS)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--write-key", required=True)
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    rid = args.run_id
    user = "py-user-%s" % rid
    anon = "py-anon-%s" % rid
    errors = []
    calls = []

    def on_error(exc, batch):
        errors.append("%s: %r (batch of %d)" % (type(exc).__name__, exc, len(batch)))

    def record(label, result, expect, absent=(), explicit_ts=None, skew=0):
        ok, msg = result
        if not ok:
            errors.append("%s: client refused to queue the message" % label)
        calls.append(
            {
                "label": label,
                "messageId": msg.get("messageId"),
                # the timestamp the client put on the wire, in UTC/ms/Z form
                "clientTimestamp": utc_ms(datetime.fromisoformat(msg["timestamp"])),
                "expect": expect,
                "absent": list(absent),
                "explicitTimestamp": explicit_ts,
                "clockSkewSeconds": skew,
            }
        )

    client = Client(
        args.write_key,
        host=args.host,
        on_error=on_error,
        max_retries=2,
        timeout=10,
    )

    traits = {
        "email": "zoe-%s@example.com" % rid,
        "name": "Zoë Ünïcødé 🚀",
        "plan": "enterprise",
        "logins": 42,
        "verified": True,
        "address": {"city": "Zürich", "zip": "8001"},
    }
    record(
        "identify",
        client.identify(user, traits),
        {"type": "identify", "userId": user, "traits": traits},
        absent=["anonymousId"],
    )

    props = {
        "order_id": "ord-%s" % rid,
        "revenue": 19.99,
        "currency": "EUR",
        "coupon": None,
        "products": [{"sku": "sku-1", "quantity": 2}, {"sku": "sku-2", "quantity": 1}],
    }
    record(
        "track",
        client.track(user, "Order Completed", props),
        {"type": "track", "userId": user, "event": "Order Completed", "properties": props},
        absent=["anonymousId"],
    )

    page_props = {"path": "/pricing", "title": "Pricing", "url": "https://example.com/pricing"}
    record(
        "page",
        client.page(user, category="Docs", name="Pricing", properties=page_props),
        {"type": "page", "userId": user, "name": "Pricing", "category": "Docs", "properties": page_props},
        absent=["anonymousId"],
    )

    screen_props = {"variant": "dark", "build": 1234}
    record(
        "screen",
        client.screen(user, category="Onboarding", name="Welcome", properties=screen_props),
        {
            "type": "screen",
            "userId": user,
            "name": "Welcome",
            "category": "Onboarding",
            "properties": screen_props,
        },
        absent=["anonymousId"],
    )

    group_id = "py-group-%s" % rid
    group_traits = {"name": "Acme GmbH", "industry": "Manufacturing", "employees": 250}
    record(
        "group",
        client.group(user, group_id, group_traits),
        {"type": "group", "userId": user, "groupId": group_id, "traits": group_traits},
        absent=["anonymousId"],
    )

    record(
        "alias",
        client.alias(anon, user),
        {"type": "alias", "previousId": anon, "userId": user},
        absent=["anonymousId"],
    )

    anon_props = {"section": "blog", "scroll_depth": 0.75}
    record(
        "anonymous track",
        client.track(event="Article Viewed", properties=anon_props, anonymous_id=anon),
        {"type": "track", "anonymousId": anon, "event": "Article Viewed", "properties": anon_props},
        absent=["userId"],
    )

    # Explicit timestamp in a non-UTC offset, 10 minutes in the past. The client sends
    # it as e.g. 2026-12-04T21:24:12.441+05:30; sluice must keep it (in UTC, ms, Z) as
    # originalTimestamp.
    ist = timezone(timedelta(hours=5, minutes=30))
    backdated = whole_ms(datetime.now(ist) - timedelta(seconds=BACKDATE_SECONDS))
    bd_props = {"plan": "pro", "interval": "yearly"}
    record(
        "backdated track",
        client.track(user, "Subscription Renewed", bd_props, timestamp=backdated),
        {"type": "track", "userId": user, "event": "Subscription Renewed", "properties": bd_props},
        absent=["anonymousId"],
        explicit_ts=utc_ms(backdated),
    )

    # The Customer.io rows that are operations rather than events: devices, suppression,
    # deletion, and an alias of a known user (a merge).
    device = {"token": "py-token-%s" % rid, "type": "ios", "model": "iPhone16,1"}
    record(
        "device installed",
        client.track(user, "Application Installed", {"build": 7}, context={"device": device}),
        {"type": "track", "userId": user, "event": "Application Installed", "properties": {"build": 7}},
        absent=["anonymousId"],
    )
    record(
        "device uninstalled",
        client.track(user, "Application Uninstalled", {}, context={"device": device}),
        {"type": "track", "userId": user, "event": "Application Uninstalled"},
        absent=["anonymousId"],
    )
    for name in ("User Suppressed", "User Unsuppressed"):
        record(
            name.lower(),
            client.track(user, name),
            {"type": "track", "userId": user, "event": name},
            absent=["anonymousId"],
        )
    gone = "py-gone-%s" % rid
    record("identify leaving user", client.identify(gone, {"email": "gone-%s@example.com" % rid}),
           {"type": "identify", "userId": gone}, absent=["anonymousId"])
    record("user deleted", client.track(gone, "User Deleted"),
           {"type": "track", "userId": gone, "event": "User Deleted"}, absent=["anonymousId"])
    old = "py-old-%s" % rid
    record("identify old account", client.identify(old, {"email": "old-%s@example.com" % rid}),
           {"type": "identify", "userId": old}, absent=["anonymousId"])
    record("alias merge", client.alias(old, user),
           {"type": "alias", "previousId": old, "userId": user}, absent=["anonymousId"])

    client.shutdown()  # flush the queue and stop the consumer thread

    # A second client whose clock runs an hour fast: sentAt comes from the library's
    # request module, so we give that module a fast clock, and pass an explicit
    # timestamp read from the same fast clock. sluice must correct the stored
    # timestamp to receivedAt - (sentAt - originalTimestamp) ~ receivedAt - 30 s.
    real_datetime = segment_request.datetime
    segment_request.datetime = _SkewedDatetime
    try:
        skewed = Client(args.write_key, host=args.host, on_error=on_error, max_retries=2, timeout=10)
        client_now = whole_ms(_SkewedDatetime.now(timezone.utc))
        sk_ts = client_now - timedelta(seconds=SKEWED_EVENT_AGE_SECONDS)
        sk_props = {"clock": "fast"}
        record(
            "skewed-clock track",
            skewed.track(user, "Clock Skew Probe", sk_props, timestamp=sk_ts),
            {"type": "track", "userId": user, "event": "Clock Skew Probe", "properties": sk_props},
            absent=["anonymousId"],
            explicit_ts=utc_ms(sk_ts),
            skew=CLOCK_SKEW_SECONDS,
        )
        skewed.shutdown()
    finally:
        segment_request.datetime = real_datetime

    manifest = {
        "client": "python",
        "library": {"name": "analytics-python", "version": VERSION},
        "errors": errors,
        "calls": calls,
    }
    with open(args.out, "w") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
    print("drive_python: %d calls made, %d client errors" % (len(calls), len(errors)))
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        sys.exit(2)
