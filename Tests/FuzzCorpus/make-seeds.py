#!/usr/bin/env python3
"""Writes the hand-made seeds of FuzzFrames and FuzzDispatch (FUZZING.md).

FuzzState's seeds are real journal records and snapshot payloads cut out of a daemon's state
directory (FUZZING.md, "Seeds"). Run from anywhere; rewrites only the files it names.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_varint(num, value):
    return varint(num << 3) + varint(value) if value else b""


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data if data else b""


def frame(stream, ftype, flags, data):
    return struct.pack(">IIBB", len(data), stream, ftype, flags) + data


def request(service, method, payload=b"", timeout=0, metadata=()):
    body = field_bytes(1, service) + field_bytes(2, method) + field_bytes(3, payload) + field_varint(4, timeout)
    for key, value in metadata:
        body += field_bytes(5, field_bytes(1, key) + field_bytes(2, value))
    return body


def status(code, message, details=()):
    body = field_varint(1, code) + field_bytes(2, message)
    for type_url, value in details:
        body += field_bytes(3, field_bytes(1, type_url) + field_bytes(2, value))
    return body


def response(status_bytes=None, payload=b""):
    body = b""
    if status_bytes is not None:
        body += field_bytes(1, status_bytes) or b"\x0a\x00"
    return body + field_bytes(2, payload)


def write(target, name, data):
    directory = os.path.join(HERE, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as handle:
        handle.write(data)


HEALTH = "grpc.health.v1.Health"
CREDITS = "creditd.v1.Credits"
ADMIN = "creditd.v1.Admin"
REASON_URL = "type.googleapis.com/creditd.v1.ErrorReason"
DAY = 86_400 * 10**9


def reason(text, **metadata):
    body = field_bytes(1, text)
    for key, value in metadata.items():
        body += field_bytes(2, field_bytes(1, key) + field_bytes(2, value))
    return body


# ---- FuzzFrames: [split seed, limit selector] + stream. 0x80 = the real 4 MiB limit.
REAL, SMALL = 0x80, 0x10
frames = {
    "health-check": (REAL, frame(1, 1, 0, request(HEALTH, "Check"))),
    "health-serving": (REAL, frame(1, 2, 0, response(payload=b"\x08\x01"))),
    "unimplemented": (REAL, frame(5, 2, 0, response(status(12, "service creditd.v9.Nope")))),
    "watch-stream": (REAL, frame(3, 1, 1, request(HEALTH, "Watch")) + frame(3, 3, 0, b"\x08\x01")
                     + frame(3, 3, 0, b"\x08\x02") + frame(3, 3, 5, b"")
                     + frame(3, 2, 0, response(status(14, "shutting down")))),
    "empty-request": (REAL, frame(7, 1, 0, b"")),
    "even-id": (REAL, frame(2, 1, 0, request(HEALTH, "Check"))),
    "unknown-type": (REAL, frame(9, 0x7F, 0xFF, b"\x00\x01\x02")),
    "oversize-small-limit": (SMALL, frame(11, 1, 0, request(CREDITS, "GetSubscription", field_bytes(1, "acme-1")))
                             + frame(13, 1, 0, request(HEALTH, "Check"))),
    "oversize-header": (REAL, struct.pack(">IIBB", 4 * 1024 * 1024 + 1, 15, 1, 0) + b"\x00" * 64),
    "domain-error": (REAL, frame(17, 2, 0, response(status(
        5, "subscription_not_found: no subscription acme-9",
        [(REASON_URL, reason("subscription_not_found", subscription_id="acme-9"))])))),
    "metadata-timeout": (REAL, frame(19, 1, 0, request(CREDITS, "ListSubscriptions", field_varint(1, 10),
                                                       timeout=5 * 10**9,
                                                       metadata=[("X-Request-Id", "a1"), ("x-request-id", "a2")]))),
    "split-frames": (REAL, frame(21, 1, 0, request(ADMIN, "GetClock")) * 3),
}
for index, (name, (limit, stream)) in enumerate(sorted(frames.items())):
    write("FuzzFrames", name, bytes([index * 37 % 256, limit]) + stream)


# ---- FuzzDispatch: Request frames against a fresh ledger at 2025-04-01T09:00:00Z.
def create(sid, seats=10, price=1000, currency="USD", interval=1, zone="Europe/Oslo", policy=0, start=""):
    return request(CREDITS, "CreateSubscription",
                   field_bytes(1, sid) + field_bytes(2, "acme") + field_bytes(3, "team")
                   + field_varint(4, seats) + field_varint(5, price) + field_bytes(6, currency)
                   + field_varint(7, interval) + field_bytes(8, zone) + field_varint(9, policy)
                   + field_bytes(10, start))


def cancel(sid, mode=0, dry=False, key=""):
    return request(CREDITS, "CancelSubscription",
                   field_bytes(1, sid) + field_varint(2, mode) + field_varint(3, int(dry)) + field_bytes(4, key))


def seats(sid, n, timing=0, dry=False, key=""):
    return request(CREDITS, "ChangeSeats",
                   field_bytes(1, sid) + field_varint(2, n) + field_varint(3, timing)
                   + field_varint(4, int(dry)) + field_bytes(5, key))


def advance(by=0, to=0):
    return request(ADMIN, "AdvanceClock", field_varint(1, by) + field_varint(2, to))


def outcome(sid, cid, result):
    return request(CREDITS, "RecordRefundOutcome", field_bytes(1, sid) + field_bytes(2, cid) + field_varint(3, result))


def reads(sid):
    return [request(CREDITS, "GetSubscription", field_bytes(1, sid)),
            request(CREDITS, "GetRefundStatus", field_bytes(1, sid)),
            request(CREDITS, "ListInvoices", field_bytes(1, sid)),
            request(CREDITS, "ListSubscriptions", field_varint(1, 2))]


def calls(*envelopes):
    return b"".join(frame(2 * i + 1, 1, 0, e) for i, e in enumerate(envelopes))


def subscription_token(after_id):
    """ListSubscriptions' page token after `after_id` (CreditIndex.swift, subscriptionToken):
    "s", an FNV-1a check of the id's UTF-8 (8 hex digits), the UTF-8 in hex."""
    data = after_id.encode()
    check = 2166136261
    for byte in data:
        check = ((check ^ byte) * 16777619) & 0xFFFFFFFF
    return "s" + f"{check:08x}" + data.hex()


dispatch = {
    "create": calls(create("acme-1")),
    "create-cancel": calls(create("acme-1"), advance(by=10 * DAY), cancel("acme-1"), *reads("acme-1")),
    "seats-down-then-cancel": calls(create("acme-1", seats=10), advance(by=10 * DAY + 3 * 3600 * 10**9),
                                    seats("acme-1", 7, key="k1"), seats("acme-1", 7, key="k1"),
                                    cancel("acme-1", key="c1"), advance(by=20 * DAY), *reads("acme-1")),
    "seats-up-at-renewal": calls(create("acme-1", seats=3), seats("acme-1", 9), seats("acme-1", 5, timing=2),
                                 advance(by=31 * DAY), *reads("acme-1")),
    "end-of-period": calls(create("acme-1", interval=2), cancel("acme-1", mode=2), advance(by=400 * DAY),
                           request(CREDITS, "ResumeSubscription", field_bytes(1, "acme-1")), *reads("acme-1")),
    "resume": calls(create("acme-1"), cancel("acme-1", mode=2),
                    request(CREDITS, "ResumeSubscription", field_bytes(1, "acme-1")), *reads("acme-1")),
    "refund-outcomes": calls(create("acme-1"), advance(by=5 * DAY), cancel("acme-1"), advance(by=40 * DAY),
                             outcome("acme-1", "c-1", 2), outcome("acme-1", "c-1", 1), *reads("acme-1")),
    "windows": calls(create("w7", policy=2, zone="America/New_York"), create("w72", policy=3, zone="Asia/Kolkata"),
                     advance(by=3600 * 10**9), seats("w7", 1), cancel("w72"), advance(by=2 * DAY),
                     seats("w7", 0), cancel("w7"), *reads("w7")),
    "dry-runs": calls(create("acme-1", currency="JPY", price=1234), cancel("acme-1", dry=True),
                      seats("acme-1", 2, dry=True), seats("acme-1", 2), *reads("acme-1")),
    "invalid": calls(create("", seats=0), create("x" * 300), create("bad", currency="XXX", zone="Mars/Base"),
                     create("neg", price=-5), seats("nobody", 3), cancel("nobody"), advance(),
                     advance(to=1), request(CREDITS, "Nope"), request("creditd.v9.Nope", "X"),
                     request(HEALTH, "Check"), request(ADMIN, "TakeSnapshot")),
    "many-subscriptions": calls(*[create(f"s-{i}", seats=i + 1) for i in range(12)],
                                request(CREDITS, "ListSubscriptions", field_varint(1, 5)),
                                request(CREDITS, "ListSubscriptions", field_varint(1, 5) + field_bytes(2, subscription_token("s-4"))),
                                advance(to=1_800_000_000 * 10**9), request(ADMIN, "TakeSnapshot")),
    "far-future": calls(create("acme-1", interval=2), advance(to=(1 << 63) - 1), *reads("acme-1")),
    "start-date": calls(create("acme-1", start="2025-04-01"), create("acme-2", start="2025-03-31"),
                        create("acme-3", zone="Pacific/Kiritimati", start="2025-04-01")),
}
for name, stream in sorted(dispatch.items()):
    write("FuzzDispatch", name, stream)

print(f"wrote {len(frames)} FuzzFrames and {len(dispatch)} FuzzDispatch seeds")
