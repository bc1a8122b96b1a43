#!/usr/bin/env python3
"""A TLS client for PROXY protocol tests: connects from a chosen loopback source
address, optionally writes a PROXY header first (v2 PROXY/LOCAL with TLVs, v1, a
partial one), then does an mTLS handshake and one GET, and prints a JSON line:
{"ok": bool, "status": N, "body": {...}, "resumed": bool, "error": "..."}.

  ppclient.py --connect HOST:PORT --source IP --cert C --key K --ca CA
              [--proxy none|v2|local|v1|partial] [--pp-src IP:PORT] [--tlv N]
              [--path /echo] [--resume [--between S]] [--hold SECONDS] [--loop S]

--resume runs the request twice, the second time resuming the first session (TLS 1.3
ticket), and prints both results as a list. --hold keeps the connection open after
the handshake for that long (limits tests) before the request. --between waits that
long between the two connections of --resume. --loop sends a keep-alive request every
0.2 s on one connection for up to S seconds and prints {"served": N, "closed_at":
EPOCH or null} (when the gateway closed it)."""
import argparse
import ipaddress
import json
import socket
import ssl
import struct
import sys
import time

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def pp_header(kind, src, dst, tlv):
    if kind == "v1":
        return ("PROXY TCP4 %s %s %d %d\r\n" % (src[0], dst[0], src[1], dst[1])).encode()
    if kind == "local":
        return SIG + bytes([0x20, 0x00]) + struct.pack(">H", 0)
    s, d = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    fam = 0x11 if s.version == 4 else 0x21
    addrs = s.packed + d.packed + struct.pack(">HH", src[1], dst[1])
    tlvs = b""
    if tlv > 0:
        # PP2_TYPE_NOOP (0x04) padding, split into TLVs of at most 65000 bytes
        left = tlv
        while left > 0:
            n = min(left - 3, 65000) if left > 3 else 0
            tlvs += bytes([0x04]) + struct.pack(">H", n) + b"\0" * n
            left -= 3 + n
    body = addrs + tlvs
    return SIG + bytes([0x21, fam]) + struct.pack(">H", len(body)) + body


def once(a, ctx, session=None):
    host, port = a.connect.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=10,
                                   source_address=(a.source, 0))
    out = {"ok": False}
    try:
        if a.proxy != "none":
            src = a.pp_src.rsplit(":", 1)
            hdr = pp_header(a.proxy, (src[0], int(src[1])), (host, int(port)), a.tlv)
            if a.proxy == "partial":
                # half a header, then silence: how long until the gateway hangs up?
                hdr = pp_header("v2", (src[0], int(src[1])), (host, int(port)), 0)[:20]
                t0 = time.monotonic()
                raw.sendall(hdr)
                try:
                    raw.recv(1)
                except OSError:
                    pass
                out["closed_after"] = round(time.monotonic() - t0, 2)
                return out
            raw.sendall(hdr)
        tls = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        out["resumed"] = tls.session_reused
        if a.hold > 0:
            time.sleep(a.hold)
        if a.loop > 0:
            return loop(a, tls, out)
        tls.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nClient-Cert: :ZXZpbA==:\r\n"
                     "Client-Cert-Chain: :ZXZpbA==:\r\nConnection: close\r\n\r\n"
                     % a.path).encode())
        data = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except ssl.SSLZeroReturnError:
                break
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        out["status"] = int(head.split(b" ", 2)[1]) if head else 0
        try:
            out["body"] = json.loads(body)
        except ValueError:
            out["body"] = body.decode(errors="replace")
        out["ok"] = out["status"] == 200
        out["session"] = tls.session
    except (OSError, ssl.SSLError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        raw.close()
    return out


def loop(a, tls, out):
    """Keep-alive requests until the gateway closes the connection or time is up."""
    end = time.monotonic() + a.loop
    out.update({"served": 0, "closed_at": None})
    buf = b""
    while time.monotonic() < end:
        try:
            tls.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
            while True:
                head, sep, rest = buf.partition(b"\r\n\r\n")
                if sep:
                    n = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            n = int(line.split(b":")[1])
                    if len(rest) >= n:
                        buf = rest[n:]
                        break
                chunk = tls.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                buf += chunk
            out["served"] += 1
        except (OSError, ssl.SSLError, ConnectionError):
            out["closed_at"] = time.time()
            break
        time.sleep(0.2)
    out["ok"] = out["served"] > 0
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connect", required=True)
    p.add_argument("--source", default="127.0.0.1")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--proxy", default="none",
                   choices=["none", "v2", "local", "v1", "partial"])
    p.add_argument("--pp-src", default="192.0.2.7:40000")
    p.add_argument("--tlv", type=int, default=0)
    p.add_argument("--path", default="/echo")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--hold", type=float, default=0)
    p.add_argument("--between", type=float, default=0)
    p.add_argument("--loop", type=float, default=0)
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.load_cert_chain(a.cert, a.key)
    first = once(a, ctx)
    results = [first]
    if a.resume and first.get("session") is not None:
        time.sleep(a.between)
        results.append(once(a, ctx, first["session"]))
    for r in results:
        r.pop("session", None)
    print(json.dumps(results if a.resume else first))


if __name__ == "__main__":
    sys.exit(main())
