#!/usr/bin/env python3
"""A deliberately naive MCP upstream for the hostile-upstream tests.

It is Python's http.server, HTTP/1.1 keep-alive, as many small MCP servers are: it
never reads a body on GET or DELETE, so a body there is parsed as the next request on
the same connection (the smuggling this test proves impossible through certgate). It
records every request it parses, one JSON line each, to --log: method, path, headers,
body_len.

POST JSON-RPC: tools/list answers a listing of three tools (echo, add, secret_tool) in
the way the query parameter `mode` asks for (hostile variants that an MCP client still
accepts); anything else answers {"result": {"method", "agent", "scopes"}} with the
identity headers it saw. GET answers {} (or, with mode=..., an event stream with the
listing). `/raw` answers a close-delimited body (HTTP/1.0 style, no length) of n bytes.

usage: naive_upstream.py --port N --log FILE
"""
import argparse
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOOLS = [{"name": n, "description": n, "inputSchema": {"type": "object"}}
         for n in ("echo", "add", "secret_tool")]
LOCK = threading.Lock()
LOG = None


def listing(rid):
    return {"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def record(self, body_len):
        rec = {"method": self.command, "path": self.path,
               "headers": [[k, v] for k, v in self.headers.items()],
               "body_len": body_len}
        with LOCK:
            LOG.write(json.dumps(rec) + "\n")
            LOG.flush()

    def reply(self, code, body, headers=(("Content-Type", "application/json"),),
              length=True):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def mode(self):
        q = parse_qs(urlsplit(self.path).query)
        return q.get("mode", ["plain"])[0], q

    def do_GET(self):
        self.record(0)
        mode, q = self.mode()
        if urlsplit(self.path).path.endswith("/raw"):
            n = int(q.get("n", ["1000000"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            chunk = b"x" * 65536
            try:
                while n > 0:
                    self.wfile.write(chunk[:n])
                    n -= len(chunk)
            except OSError:
                pass
            return
        if mode == "sse_replay":
            ev = "id: 1\ndata: " + json.dumps(listing(7)) + "\n\n"
            self.reply(200, ev, (("Content-Type", "text/event-stream"),))
            return
        self.reply(200, "{}")

    def do_DELETE(self):
        self.record(0)
        self.reply(200, "{}")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        self.record(len(raw))
        try:
            msg = json.loads(raw)
        except ValueError:
            self.reply(400, "{}")
            return
        if not isinstance(msg, dict) or "id" not in msg:
            self.reply(202, "")
            return
        if msg.get("method") == "tools/list":
            self.hostile_listing(msg["id"])
            return
        res = {"jsonrpc": "2.0", "id": msg["id"],
               "result": {"method": msg.get("method"),
                          "agent": self.headers.get("X-Agent-Id"),
                          "scopes": self.headers.get("X-Agent-Scopes")}}
        self.reply(200, json.dumps(res))

    def hostile_listing(self, rid):
        mode, _ = self.mode()
        body = json.dumps(listing(rid))
        json_ct = (("Content-Type", "application/json"),)
        if mode == "plain":
            self.reply(200, body, json_ct)
        elif mode == "ctype_seq":        # the SDK tests contentType.includes(...)
            self.reply(200, body, (("Content-Type", "application/json-seq"),))
        elif mode == "ctype_param":
            self.reply(200, body, (("Content-Type", 'text/plain; profile="application/json"'),))
        elif mode == "ctype_tab":
            self.reply(200, body, (("Content-Type", "application/json\t;charset=utf-8"),))
        elif mode == "ctype_two":        # fetch joins repeated headers with ", "
            self.reply(200, body, (("Content-Type", "text/plain"),
                                   ("Content-Type", "application/json")))
        elif mode == "ctype_none":
            self.reply(200, body, ())
        elif mode == "bom":              # Response.json() strips a UTF-8 BOM
            self.reply(200, b"\xef\xbb\xbf" + body.encode(), json_ct)
        elif mode == "two_ce":           # the first line says identity, the second gzip
            self.reply(200, gzip.compress(body.encode()),
                       json_ct + (("Content-Encoding", "identity"),
                                  ("Content-Encoding", "gzip")))
        elif mode == "id_string":        # the SDK matches Number(id)
            self.reply(200, json.dumps(listing(str(rid))), json_ct)
        elif mode == "id_null":
            self.reply(200, json.dumps(listing(None)), json_ct)
        elif mode == "id_float":         # 1.0 is the same id as 1 to a client
            self.reply(200, json.dumps(listing(float(rid))), json_ct)
        elif mode == "te_gzip":
            data = gzip.compress(body.encode())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "gzip, chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        elif mode == "sse_ctype":        # includes("text/event-stream")
            ev = "data: " + body + "\n\n"
            self.reply(200, ev, (("Content-Type", "text/event-streamx"),))
        elif mode == "sse_id_string":
            ev = "data: " + json.dumps(listing(str(rid))) + "\n\n"
            self.reply(200, ev, (("Content-Type", "text/event-stream"),))
        elif mode == "sse_twice":        # the listing, then the same id again unfiltered
            ev = ("data: " + body + "\n\n") * 2
            self.reply(200, ev, (("Content-Type", "text/event-stream"),))
        elif mode == "sse_plain":
            ev = "data: " + body + "\n\n"
            self.reply(200, ev, (("Content-Type", "text/event-stream"),))
        elif mode == "close_delimited":  # no length: the body ends when we close
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body.encode())
            self.close_connection = True
        else:
            self.reply(500, "unknown mode")


def main():
    global LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    LOG = open(a.log, "a")
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
