#!/usr/bin/env python3
"""Independent checks of what Switchboard delivers, with the reference Python libraries:
the `standardwebhooks` package verifies the signature, the `cloudevents` SDK parses the
structured-mode envelope, and a body with one byte changed must be rejected.

usage: interop_verify.py <whsec_secret> <capture.json>...
capture.json: {"headers": {...}, "body_base64": "..."} — one delivered request each.
"""
import base64
import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

try:  # cloudevents 2.x
    from cloudevents.core.bindings.http import HTTPMessage, from_http_event

    def parse_cloudevent(headers, body):
        return from_http_event(HTTPMessage(headers=headers, body=body))

    def attr(event, name):
        return event.get_attributes().get(name) if hasattr(event, "get_attributes") else event[name]
except ImportError:  # cloudevents 1.x
    from cloudevents.http import from_http

    def parse_cloudevent(headers, body):
        return from_http(headers, body)

    def attr(event, name):
        return event[name]

passed, failed = 0, 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


secret = sys.argv[1]
hook = Webhook(secret)
for path in sys.argv[2:]:
    capture = json.load(open(path))
    headers = {k.lower(): v for k, v in capture["headers"].items()}
    body = base64.b64decode(capture["body_base64"])

    try:
        hook.verify(body, headers)
        check(f"{path}: signature verifies", True)
    except WebhookVerificationError as e:
        check(f"{path}: signature verifies", False, str(e))

    tampered = bytearray(body)
    i = body.find(b'"text_fallback":"') + len(b'"text_fallback":"')
    if i < len(b'"text_fallback":"'):
        i = len(body) // 2
    tampered[i] = ord("X") if tampered[i] != ord("X") else ord("Y")
    try:
        hook.verify(bytes(tampered), headers)
        check(f"{path}: tampered body rejected", False, "a changed byte still verified")
    except WebhookVerificationError:
        check(f"{path}: tampered body rejected", True)

    event = parse_cloudevent(headers, body)
    check(f"{path}: specversion", attr(event, "specversion") in ("1.0",), str(attr(event, "specversion")))
    check(f"{path}: id is webhook-id", attr(event, "id") == headers["webhook-id"])
    check(f"{path}: type", str(attr(event, "type")).startswith("switchboard."))
    check(f"{path}: source", str(attr(event, "source")).startswith("urn:switchboard:"))
    check(f"{path}: time", attr(event, "time") is not None)
    raw = json.loads(body)
    check(f"{path}: sequence zero-padded", len(raw.get("sequence", "")) == 20 and raw["sequence"].isdigit())
    check(f"{path}: partitionkey = subject", raw.get("partitionkey") == raw.get("subject"))

print(f"interop: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
