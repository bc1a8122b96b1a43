#!/usr/bin/env python3
"""Hostile requests and hostile upstream answers, with the upstream's view checked.

usage: upstream_cases.py --port N --ca CA --cert C --key K --uplog FILE [--only NAME]

The gateway sits in front of tests/tools/naive_upstream.py (http.server, which never
reads a GET/DELETE body and logs every request it parses to FILE). The client is an
agent allowed `tools/list` and `tools/call echo` only. One row per case:

  smuggle   a request the gateway must refuse (or frame itself) so that the upstream
            parses no request the gateway did not authorize;
  path      a request target: refused, or forwarded normalized under the upstream's
            /mcp prefix;
  listing   tools/list answered by the upstream in a hostile way that an MCP client
            still accepts: the agent must never see a tool it may not call (502 or a
            filtered listing).

Every case's requests carry `case=NAME` in the query so the upstream log can be
matched to it. Prints "ok NAME: ..." per case; exits 1 on the first failure.
"""
import argparse
import json
import zlib
import sys
import time
from urllib.parse import unquote

from hostile_lib import (JSON_HEADERS, Target, read_outcome, send_quietly, tls_connect)

FORBIDDEN = ("secret_tool", '"add"')


def rpc(method, rid=1, name=None):
    msg = {"jsonrpc": "2.0", "id": rid, "method": method}
    if name:
        msg["params"] = {"name": name, "arguments": {}}
    return json.dumps(msg).encode()


def smuggled(case):
    """A complete POST the agent may not make, with identity headers of its choosing."""
    body = rpc("tools/call", 9, "secret_tool")
    return ("POST /mcp?case=%s-smuggled HTTP/1.1\r\nHost: x\r\nX-Agent-Id: admin\r\n"
            "X-Agent-Scopes: *\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (case, len(body))).encode() + body


def head(method, target, extra=()):
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: localhost"] + list(extra)
    return ("\r\n".join(lines) + "\r\n").encode()


def with_cl(method, case, body):
    return head(method, "/mcp?case=" + case,
                ["Content-Length: %d" % len(body)]) + b"\r\n" + body


def with_chunks(method, case, body):
    return (head(method, "/mcp?case=" + case, ["Transfer-Encoding: chunked"]) + b"\r\n" +
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))


# (name, request bytes, allowed statuses, upstream must see: None = nothing,
#  else a function(records) -> error text or None)
def expect_forwarded(method, want_cl=None):
    def check(recs):
        if len(recs) != 1:
            return "upstream parsed %d requests, want 1" % len(recs)
        r = recs[0]
        names = [k.lower() for k, _ in r["headers"]]
        if r["method"] != method:
            return "upstream saw %s" % r["method"]
        if "transfer-encoding" in names:
            return "the client's Transfer-Encoding reached the upstream"
        cl = [v for k, v in r["headers"] if k.lower() == "content-length"]
        if want_cl is None and cl:
            return "a Content-Length reached the upstream on %s" % method
        if want_cl is not None and cl != [str(want_cl)]:
            return "upstream Content-Length %s, want %d" % (cl, want_cl)
        return None
    return check


def smuggle_cases():
    s = {}
    for m in ("GET", "DELETE"):
        n = "%s_cl_body" % m.lower()
        s[n] = (with_cl(m, n, smuggled(n)), (400,), None)
        n = "%s_chunked_body" % m.lower()
        s[n] = (with_chunks(m, n, smuggled(n)), (400,), None)
        n = "%s_cl_zero" % m.lower()
        s[n] = (head(m, "/mcp?case=" + n, ["Content-Length: 0"]) + b"\r\n", (200,),
                expect_forwarded(m))
    body = rpc("tools/call", 3, "echo")
    s["post_chunked"] = (with_chunks("POST", "post_chunked", body).replace(
        b"Host: localhost\r\n", b"Host: localhost\r\nContent-Type: application/json\r\n"
        b"Accept: application/json, text/event-stream\r\n"), (200,),
        expect_forwarded("POST", len(body)))
    return s


PATHS = [
    # (name, target): refused (400) or forwarded under /mcp without dot segments
    ("dotdot", "/mcp/../x"),
    ("dotdot_deep", "/mcp/a/../../x"),
    ("dot_dotdot", "/mcp/./../x"),
    ("enc_dotdot", "/mcp/%2e%2e/x"),
    ("enc_dotdot_upper", "/mcp/%2E%2E/x"),
    ("enc_half", "/mcp/.%2e/x"),
    ("enc_slash", "/mcp/..%2fx"),
    ("enc_slash_prefix", "/mcp%2f..%2fx"),
    ("backslash", "/mcp/..\\x"),
    ("enc_backslash", "/mcp/..%5cx"),
    ("double_slash", "//mcp/../x"),
    ("prefix_sibling", "/mcpx/../x"),
    ("trailing_dotdot", "/mcp/.."),
    ("enc_nul", "/mcp/%00/x"),
    ("plain", "/mcp"),
    ("inside", "/mcp/a/../b"),
]


def path_check(target):
    def check(recs):
        for r in recs:
            p = r["path"].split("?", 1)[0]
            low = unquote(p).lower()
            if not (p == "/mcp" or p.startswith("/mcp/")):
                return "upstream saw %r (outside /mcp) for %r" % (p, target)
            segs = low.split("/")
            if ".." in segs or "." in segs or "\\" in low or "%" in p.lower():
                return "upstream saw %r (dot segment or encoding) for %r" % (p, target)
        return None
    return check


LISTING_MODES = ["plain", "ctype_seq", "ctype_param", "ctype_tab", "ctype_two",
                 "ctype_none", "bom", "two_ce", "id_string", "id_null", "id_float",
                 "te_gzip", "sse_ctype", "sse_id_string", "sse_twice", "sse_plain",
                 "close_delimited"]


def visible(o):
    """Every byte a client could turn into text: the body as sent, de-chunked, and
    decompressed when it is gzip (a client of the attacker's can always gunzip)."""
    body = o.body
    if "chunked" in o.headers.get("transfer-encoding", "").lower():
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            try:
                n = int(size.split(b";")[0], 16)
            except ValueError:
                break
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    views = [o.body, body]
    for b in (o.body, body):
        i = b.find(b"\x1f\x8b")
        if i >= 0:
            try:
                views.append(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(b[i:]))
            except zlib.error:
                pass
    return b"".join(views)


def run_one(t, data, timeout=10):
    s = tls_connect(t)
    try:
        send_quietly(s, data)
        return read_outcome(s, timeout)
    finally:
        s.close()


def upstream_records(path, case):
    recs = []
    try:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if ("case=" + case) in r["path"] or ("case=" + case + "-") in r["path"]:
                    recs.append(r)
    except FileNotFoundError:
        pass
    return recs


def all_records(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--uplog", required=True)
    ap.add_argument("--only")
    a = ap.parse_args()
    t = Target("127.0.0.1", a.port, a.ca, a.cert, a.key)
    failed = []

    def report(name, err, o):
        if err:
            failed.append(name)
            print("FAIL %s: %s (gateway: %s)" % (name, err, o))
        else:
            print("ok %s: %s" % (name, o))

    def settle():
        time.sleep(0.3)     # the upstream logs from its own threads

    for name, (data, statuses, check) in smuggle_cases().items():
        if a.only and a.only != name:
            continue
        o = run_one(t, data)
        settle()
        err = None
        if o.kind != "response" or o.status not in statuses:
            err = "expected HTTP %s" % "/".join(map(str, statuses))
        recs = upstream_records(a.uplog, name)
        if any("smuggled" in r["path"] for r in recs):
            err = "the upstream parsed the smuggled request"
        elif check is None and recs:
            err = "the upstream saw %d request(s) for a refused request" % len(recs)
        elif check is not None and err is None:
            err = check(recs)
        report("smuggle/" + name, err, o)

    for name, target in PATHS:
        if a.only and a.only != name:
            continue
        sep = "&" if "?" in target else "?"
        req = head("GET", target + sep + "case=path_" + name,
                   ["Accept: text/event-stream"]) + b"\r\n"
        o = run_one(t, req)
        settle()
        err = None
        if o.kind != "response" or o.status not in (200, 400):
            err = "expected 200 or 400"
        if err is None:
            err = path_check(target)(upstream_records(a.uplog, "path_" + name))
        if err is None and o.status == 200 and not upstream_records(a.uplog, "path_" + name):
            err = "200 without reaching the upstream"
        report("path/" + name, err, o)

    for mode in LISTING_MODES:
        name = "listing_" + mode
        if a.only and a.only != name:
            continue
        body = rpc("tools/list", 1)
        req = head("POST", "/mcp?mode=%s&case=%s" % (mode, name), JSON_HEADERS +
                   ["Content-Length: %d" % len(body)]) + b"\r\n" + body
        o = run_one(t, req)
        err = None
        if o.kind != "response" or o.status not in (200, 502):
            err = "expected 200 (filtered) or 502"
        else:
            seen = [f for f in FORBIDDEN if f.encode() in visible(o)]
            if seen:
                err = "the agent saw tools it may not call: %s" % ", ".join(seen)
            elif mode == "plain" and (o.status != 200 or b"echo" not in o.body):
                err = "the plain listing was not passed filtered"
        report("listing/" + mode, err, o)

    if not a.only or a.only == "get_replay":
        req = head("GET", "/mcp?mode=sse_replay&case=get_replay",
                   ["Accept: text/event-stream"]) + b"\r\n"
        o = run_one(t, req)
        err = None
        if o.kind != "response" or o.status not in (200, 502):
            err = "expected 200 or 502"
        elif any(f.encode() in visible(o) for f in FORBIDDEN):
            err = "the agent saw tools it may not call on a GET stream"
        report("listing/get_replay", err, o)

    # Whatever the upstream parsed came from the gateway, for this agent only.
    for r in all_records(a.uplog):
        if "case=" not in r["path"]:
            continue    # requests of other parts of the test
        ids = [v for k, v in r["headers"] if k.lower() == "x-agent-id"]
        if ids != [a.agent]:
            failed.append("identity")
            print("FAIL identity: upstream request %s %s carried X-Agent-Id %s" %
                  (r["method"], r["path"], ids))
    if failed:
        print("%d case(s) failed: %s" % (len(failed), " ".join(failed)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
