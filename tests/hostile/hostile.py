#!/usr/bin/env python3
"""Hostile clients against a running certgate gateway, one case per run.

usage: hostile.py --port N --ca CA.pem --cert C --key K [--host H]
                  [--header-timeout-ms N] [--body-timeout-ms N]
                  [--handshake-timeout-ms N] [--present CERT KEY] CASE
       hostile.py --list

Each case opens its own connection(s) with the given (valid) client certificate
unless it is about certificates or TLS itself, does one hostile thing, and checks the
gateway's answer against the table below. Prints "ok CASE: what happened" and exits
0, "FAIL CASE: expected ..., got ..." and exits 1, or "skip CASE: why" and exits 77.
Requests carry the marker "hostile_CASE" (path query and JSON-RPC tool name) so the
caller can check that the audit log never allowed them.

The timeouts passed in must be the gateway's configured limits: a case fails when the
gateway takes more than the limit plus a margin to cut a slow client off."""
import argparse
import ssl
import sys
import warnings

from hostile_lib import (JSON_HEADERS, Target, client_context, drip, read_outcome,
                         request, rpc_body, send_quietly, tls_connect, wait_closed)

# TLS 1.0/1.1 are offered on purpose.
warnings.filterwarnings("ignore", category=DeprecationWarning)

MARGIN = 2.5   # seconds of slack on top of a configured limit
CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def marker(name):
    return "hostile_" + name


def post(name, headers=(), body=None, path=None):
    body = rpc_body(marker(name)) if body is None else body
    return request("POST", path or "/mcp?" + marker(name), JSON_HEADERS + list(headers), body)


def want_status(o, statuses, what):
    if o.kind == "response" and o.status in statuses:
        return True, "%s: %s" % (what, o)
    return False, "%s: expected HTTP %s, got %s" % (
        what, "/".join(str(s) for s in statuses), o)


def exchange(t, data, timeout=10.0):
    s = tls_connect(t)
    try:
        send_quietly(s, data)
        return read_outcome(s, timeout)
    finally:
        s.close()


# --- slow clients ---------------------------------------------------------------------

@case
def slowloris(t, a):
    """Request head one byte per second: 408 or close by header_timeout_ms."""
    limit = a.header_timeout_ms / 1000.0
    head = post("slowloris", ["X-Pad-%d: %s" % (i, "v" * 20) for i in range(20)], body=b"")
    head = head.rsplit(b"\r\n\r\n", 1)[0]  # never finishes
    s = tls_connect(t)
    try:
        o, sent = drip(s, head, 1.0, limit * 3 + MARGIN)
    finally:
        s.close()
    if o.kind == "timeout":
        return False, "still open after %.1fs and %d bytes (header_timeout_ms %d)" % (
            o.elapsed, sent, a.header_timeout_ms)
    if o.elapsed > limit + MARGIN:
        return False, "cut off only after %.1fs (header_timeout_ms %d): %s" % (
            o.elapsed, a.header_timeout_ms, o)
    if o.kind == "response" and o.status != 408:
        return False, "expected 408 or a close, got %s" % o
    return True, "%s after %d bytes" % (o, sent)


@case
def slow_body(t, a):
    """Complete head, body one byte per second: 408 or close by body_timeout_ms."""
    limit = a.body_timeout_ms / 1000.0
    body = rpc_body(marker("slow_body")) + b" " * 200
    s = tls_connect(t)
    try:
        head = post("slow_body", body=body)[:-len(body)]
        send_quietly(s, head)
        o, sent = drip(s, body, 1.0, limit * 3 + MARGIN)
    finally:
        s.close()
    if o.kind == "timeout":
        return False, "still open after %.1fs and %d body bytes (body_timeout_ms %d)" % (
            o.elapsed, sent, a.body_timeout_ms)
    if o.elapsed > limit + MARGIN:
        return False, "cut off only after %.1fs (body_timeout_ms %d): %s" % (
            o.elapsed, a.body_timeout_ms, o)
    if o.kind == "response" and o.status != 408:
        return False, "expected 408 or a close, got %s" % o
    return True, "%s after %d body bytes" % (o, sent)


def _raw(t):
    import socket
    return socket.create_connection((t.host, t.port), timeout=10)


def _closed_by_handshake_timeout(t, a, s, what):
    limit = a.handshake_timeout_ms / 1000.0
    closed, secs, got = wait_closed(s, limit * 3 + MARGIN)
    if not closed:
        return False, "%s: still open after %.1fs (handshake_timeout_ms %d)" % (
            what, secs, a.handshake_timeout_ms)
    if secs > limit + MARGIN:
        return False, "%s: closed only after %.1fs (handshake_timeout_ms %d)" % (
            what, secs, a.handshake_timeout_ms)
    return True, "%s: closed after %.1fs (%d bytes from the gateway)" % (what, secs, len(got))


@case
def no_handshake(t, a):
    """TCP connect and send nothing: closed after handshake_timeout_ms."""
    s = _raw(t)
    try:
        return _closed_by_handshake_timeout(t, a, s, "silent client")
    finally:
        s.close()


def client_hello(t):
    """The bytes of a real ClientHello (from an in-memory handshake)."""
    ctx = client_context(t)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


@case
def half_clienthello(t, a):
    """Half a ClientHello, then silence: closed after handshake_timeout_ms."""
    ch = client_hello(t)
    s = _raw(t)
    try:
        s.sendall(ch[:len(ch) // 2])
        return _closed_by_handshake_timeout(t, a, s, "half ClientHello (%d of %d bytes)"
                                            % (len(ch) // 2, len(ch)))
    finally:
        s.close()


@case
def idle_after_handshake(t, a):
    """A completed handshake and then silence: closed by header_timeout_ms."""
    limit = a.header_timeout_ms / 1000.0
    s = tls_connect(t)
    try:
        o = read_outcome(s, limit * 3 + MARGIN)
    finally:
        s.close()
    if o.kind == "timeout":
        return False, "still open after %.1fs (header_timeout_ms %d)" % (
            o.elapsed, a.header_timeout_ms)
    if o.elapsed > limit + MARGIN:
        return False, "closed only after %.1fs (header_timeout_ms %d)" % (
            o.elapsed, a.header_timeout_ms)
    if o.kind == "response" and o.status != 408:
        return False, "expected 408 or a close, got %s" % o
    return True, "idle connection: %s" % o


@case
def slowloris_flood(t, a):
    """100 connections dripping their heads: a good client is still served at once,
    and every slow one is cut off by header_timeout_ms."""
    import time
    limit = a.header_timeout_ms / 1000.0
    n = 100
    conns = []
    try:
        t0 = time.monotonic()
        for i in range(n):
            s = tls_connect(t)
            send_quietly(s, b"POST /mcp?" + marker("slowloris_flood").encode() +
                         b" HTTP/1.1\r\nHost: x\r\n")
            conns.append(s)
        opened = time.monotonic() - t0
        s = tls_connect(t)
        try:
            send_quietly(s, request("POST", "/mcp", JSON_HEADERS,
                                    b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'))
            good = read_outcome(s, 5.0)
        finally:
            s.close()
        if good.kind != "response" or good.status != 200 or good.elapsed > 2.0:
            return False, "a good request among %d slow connections: %s" % (n, good)
        deadline = time.monotonic() + limit + MARGIN + 1.0
        still = []
        for s in conns:
            closed, _, _ = wait_closed(s, max(0.01, deadline - time.monotonic()))
            if not closed:
                still.append(s)
        if still:
            return False, "%d of %d slow connections still open %.1fs after opening" % (
                len(still), n, time.monotonic() - t0)
        return True, "%d slow connections opened in %.1fs, good request %s, all cut off" % (
            n, opened, good)
    finally:
        for s in conns:
            s.close()


# --- HTTP framing ---------------------------------------------------------------------

@case
def many_headers(t, a):
    """10,000 tiny header lines: 431."""
    o = exchange(t, post("many_headers", ["X-%d: y" % i for i in range(10000)]))
    return want_status(o, (431,), "10000 header lines")


@case
def huge_content_length(t, a):
    """Content-Length of 1 GiB: 413 at once, without reading the body."""
    data = post("huge_content_length", ["Content-Length: 1073741824"], body=b"")
    data += b'{"jsonrpc":"2.0"'
    o = exchange(t, data, timeout=5.0)
    ok, msg = want_status(o, (413,), "1 GiB Content-Length")
    if ok and o.elapsed > 2.0:
        return False, "413 only after %.1fs: the gateway waited for the body" % o.elapsed
    return ok, msg


@case
def huge_header(t, a):
    """One 64 kB header value (over max_header_bytes): 431."""
    o = exchange(t, post("huge_header", ["X-Big: " + "b" * 65536]))
    return want_status(o, (431,), "64 kB header")


@case
def dup_content_length(t, a):
    """Two different Content-Length headers: 400."""
    body = rpc_body(marker("dup_content_length"))
    o = exchange(t, post("dup_content_length", ["Content-Length: %d" % len(body),
                                                "Content-Length: %d" % (len(body) + 5)],
                         body=body))
    return want_status(o, (400,), "conflicting Content-Length")


@case
def te_obfuscated(t, a):
    """Transfer-Encodings a proxy might read differently from the upstream: 400/501."""
    msgs = []
    for te in ("chunked, identity", "xchunked", "chunked, chunked", "gzip"):
        body = b"5\r\nhello\r\n0\r\n\r\n"
        o = exchange(t, post("te_obfuscated", ["Transfer-Encoding: " + te], body=body))
        ok, msg = want_status(o, (400, 501), "Transfer-Encoding %r" % te)
        if not ok:
            return False, msg
        msgs.append("%r -> %s" % (te, o.status))
    return True, ", ".join(msgs)


@case
def cl_te(t, a):
    """Content-Length and Transfer-Encoding together (smuggling): 400."""
    body = b"0\r\n\r\n"
    o = exchange(t, post("cl_te", ["Content-Length: 5", "Transfer-Encoding: chunked"],
                         body=body))
    return want_status(o, (400,), "Content-Length + Transfer-Encoding")


@case
def chunk_overflow(t, a):
    """A chunk size that overflows 64 bits: 400."""
    body = b"FFFFFFFFFFFFFFFFFFFFFFFF\r\n" + rpc_body(marker("chunk_overflow")) + b"\r\n0\r\n\r\n"
    o = exchange(t, post("chunk_overflow", ["Transfer-Encoding: chunked"], body=body))
    return want_status(o, (400,), "chunk size overflow")


@case
def nul_header(t, a):
    """A NUL byte inside a header value: 400."""
    o = exchange(t, post("nul_header", ["X-Evil: a\x00b"]))
    return want_status(o, (400,), "NUL in a header")


@case
def bare_cr_header(t, a):
    """A bare CR inside a header value: 400."""
    o = exchange(t, post("bare_cr_header", ["X-Evil: a\rInjected: b"]))
    return want_status(o, (400,), "bare CR in a header")


@case
def long_request_line(t, a):
    """A 100 kB request target: 400 or 414."""
    path = "/mcp?" + marker("long_request_line") + "&" + "A" * 100000
    o = exchange(t, post("long_request_line", path=path))
    return want_status(o, (400, 414), "100 kB request line")


@case
def http09(t, a):
    """An HTTP/0.9 request `GET /\\r\\n`: 400 or close, never an answer from upstream."""
    limit = a.header_timeout_ms / 1000.0
    o = exchange(t, b"GET /?" + marker("http09").encode() + b"\r\n", timeout=limit + MARGIN)
    if o.kind == "response" and o.status in (400, 408, 505):
        return True, "HTTP/0.9: %s" % o
    if o.kind in ("closed", "tls-error"):
        return True, "HTTP/0.9: %s" % o
    return False, "HTTP/0.9: expected 400 or a close, got %s" % o


@case
def h2_preface(t, a):
    """HTTP/2 on the TLS port: no h2 by ALPN; the prior-knowledge preface gets 400/close."""
    ctx = client_context(t)
    ctx.set_alpn_protocols(["h2"])
    s = tls_connect(t, ctx)
    try:
        if s.selected_alpn_protocol() == "h2":
            return False, "the gateway negotiated h2 by ALPN"
        send_quietly(s, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                     b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        o = read_outcome(s, a.header_timeout_ms / 1000.0 + MARGIN)
    finally:
        s.close()
    if o.kind == "response" and o.status in (400, 505):
        return True, "h2 preface: %s" % o
    if o.kind in ("closed", "tls-error"):
        return True, "h2 preface: %s" % o
    return False, "h2 preface: expected 400 or a close, got %s" % o


# --- TLS policy -----------------------------------------------------------------------

def _handshake_must_fail(t, ctx, what, send_marker=None):
    """Handshake (and, for TLS 1.3 where a refused client certificate shows only after
    the client's Finished, one request): must fail before any HTTP answer."""
    try:
        s = tls_connect(t, ctx)
    except (ssl.SSLError, OSError) as e:
        return True, "%s: handshake failed (%s)" % (what, e)
    try:
        version, cipher = s.version(), s.cipher()[0]
        if send_marker is None:
            return False, "%s: handshake succeeded (%s, %s)" % (what, version, cipher)
        send_quietly(s, post(send_marker))
        o = read_outcome(s, 5.0)
    finally:
        s.close()
    if o.kind == "response":
        return False, "%s: the gateway answered HTTP %s over %s" % (what, o.status, version)
    return True, "%s: refused after the client's Finished (%s, %s)" % (what, version, o)


def _old_tls(t, ver, name):
    ctx = client_context(t)
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ver
        ctx.maximum_version = ver
    except (ssl.SSLError, ValueError) as e:
        return None, "this client cannot offer %s: %s" % (name, e)
    return _handshake_must_fail(t, ctx, name)


@case
def tls10(t, a):
    """A TLS 1.0-only client: handshake fails."""
    return _old_tls(t, ssl.TLSVersion.TLSv1, "TLS 1.0")


@case
def tls11(t, a):
    """A TLS 1.1-only client: handshake fails."""
    return _old_tls(t, ssl.TLSVersion.TLSv1_1, "TLS 1.1")


WEAK = ["ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA",
        "AES128-SHA", "AES256-SHA", "AES128-GCM-SHA256", "DES-CBC3-SHA",
        "ECDHE-ECDSA-DES-CBC3-SHA", "RC4-SHA", "ECDHE-ECDSA-RC4-SHA", "NULL-SHA256",
        "ECDHE-ECDSA-NULL-SHA", "ADH-AES128-SHA", "AECDH-AES128-SHA"]


@case
def weak_ciphers(t, a):
    """TLS 1.2 offers of only CBC-SHA1 / static-RSA / 3DES / RC4 / NULL / anonymous
    suites, one at a time: every handshake fails."""
    tried, skipped, bad = [], [], []
    for c in WEAK:
        ctx = client_context(t, max_version=ssl.TLSVersion.TLSv1_2)
        try:
            ctx.set_ciphers(c + ":@SECLEVEL=0")
        except ssl.SSLError:
            skipped.append(c)
            continue
        ok, msg = _handshake_must_fail(t, ctx, c)
        tried.append(c)
        if not ok:
            bad.append(msg)
    if bad:
        return False, "; ".join(bad)
    if not tried:
        return None, "this client can offer none of " + " ".join(WEAK)
    return True, "refused %s (client cannot offer: %s)" % (" ".join(tried),
                                                          " ".join(skipped) or "-")


# Suites no modern OpenSSL client will offer, sent in a hand-built TLS 1.2
# ClientHello: 3DES, RC4, export, DES, NULL and anonymous suites.
RAW_WEAK = {0x000A: "DES-CBC3-SHA", 0xC012: "ECDHE-RSA-DES-CBC3-SHA",
            0xC008: "ECDHE-ECDSA-DES-CBC3-SHA", 0x0005: "RC4-SHA", 0x0004: "RC4-MD5",
            0xC011: "ECDHE-RSA-RC4-SHA", 0xC007: "ECDHE-ECDSA-RC4-SHA",
            0x0003: "EXP-RC4-MD5", 0x0008: "EXP-DES-CBC-SHA", 0x0009: "DES-CBC-SHA",
            0x0002: "NULL-SHA", 0xC006: "ECDHE-ECDSA-NULL-SHA", 0x0018: "ADH-RC4-MD5",
            0x001B: "ADH-DES-CBC3-SHA"}


def raw_client_hello(suites):
    import os
    import struct

    def ext(kind, body):
        return struct.pack("!HH", kind, len(body)) + body
    groups = struct.pack("!H", 4) + struct.pack("!HH", 0x0017, 0x001D)
    sigalgs = struct.pack("!H", 6) + struct.pack("!HHH", 0x0403, 0x0804, 0x0401)
    exts = ext(0x000A, groups) + ext(0x000B, b"\x01\x00") + ext(0x000D, sigalgs) + \
        ext(0xFF01, b"\x00")
    cs = b"".join(struct.pack("!H", c) for c in suites)
    body = b"\x03\x03" + os.urandom(32) + b"\x00" + struct.pack("!H", len(cs)) + cs + \
        b"\x01\x00" + struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


@case
def raw_weak_hello(t, a):
    """A hand-made TLS 1.2 ClientHello offering only 3DES / RC4 / export / DES / NULL /
    anonymous suites: an alert or a close, never a ServerHello."""
    s = _raw(t)
    try:
        s.sendall(raw_client_hello(sorted(RAW_WEAK)))
        s.settimeout(5)
        data = b""
        try:
            while len(data) < 11:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError as e:  # includes socket.timeout
            if not data:
                return True, "closed without a ServerHello (%s)" % e
    finally:
        s.close()
    if not data:
        return True, "closed without a ServerHello"
    if data[0] == 0x15 and len(data) >= 7:
        return True, "alert level %d description %d" % (data[5], data[6])
    if data[0] == 0x16 and len(data) >= 6 and data[5] == 0x02:
        # ServerHello: the chosen suite follows version, random and session id.
        sid = data[43] if len(data) > 43 else 0
        off = 44 + sid
        chosen = int.from_bytes(data[off:off + 2], "big") if len(data) >= off + 2 else -1
        return False, "the gateway answered with a ServerHello choosing %s" % \
            RAW_WEAK.get(chosen, hex(chosen))
    return False, "unexpected reply %r" % data[:16]


@case
def bad_cert(t, a):
    """--present CERT KEY must be refused (TLS 1.2 and TLS 1.3) before any HTTP."""
    if not a.present:
        return None, "needs --present CERT KEY"
    cert, key = a.present
    msgs = []
    for ver in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_context(t, cert=cert, key=key, min_version=ver, max_version=ver)
        ok, msg = _handshake_must_fail(t, ctx, ver.name, send_marker="bad_cert")
        if not ok:
            return False, msg
        msgs.append(msg)
    return True, "; ".join(msgs)


# --- JSON-RPC bodies --------------------------------------------------------------------

@case
def batch_10k(t, a):
    """A 10,000-element JSON-RPC batch: a clear HTTP answer (413 over the body limit,
    else a verdict) within 15 s, never a hang or a crash."""
    one = '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s"}}'
    body = ("[" + ",".join(one % (i, marker("batch_10k")) for i in range(10000)) + "]").encode()
    o = exchange(t, post("batch_10k", body=body), timeout=15.0)
    return want_status(o, (200, 202, 400, 403, 413, 429),
                       "10000-element batch (%d bytes)" % len(body))


@case
def nested_json(t, a):
    """JSON nested 100,000 levels deep: 400."""
    body = b"[" * 100000 + b"]" * 100000
    o = exchange(t, post("nested_json", body=body))
    return want_status(o, (400,), "100000-deep JSON")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("case", nargs="?")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--ca")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--present", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--header-timeout-ms", type=int, default=10000)
    ap.add_argument("--body-timeout-ms", type=int, default=30000)
    ap.add_argument("--handshake-timeout-ms", type=int, default=10000)
    a = ap.parse_args()
    if a.list:
        for name, fn in CASES.items():
            print("%-20s %s" % (name, (fn.__doc__ or "").split("\n")[0]))
        return 0
    if a.case not in CASES or not (a.port and a.ca and a.cert and a.key):
        ap.error("need CASE (see --list), --port, --ca, --cert and --key")
    t = Target(a.host, a.port, a.ca, a.cert, a.key)
    try:
        ok, msg = CASES[a.case](t, a)
    except Exception as e:  # a case that blows up is a failed case, with the reason
        ok, msg = False, "%s: %s" % (type(e).__name__, e)
    if ok is None:
        print("skip %s: %s" % (a.case, msg))
        return 77
    print("%s %s: %s" % ("ok" if ok else "FAIL", a.case, msg))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
