#!/usr/bin/env python3
"""Tiny upstream for integration tests: HTTP/1.1 keep-alive on 127.0.0.1:PORT.

POST with a JSON-RPC body answers {"jsonrpc":"2.0","id":<id>,"result":{...}} echoing
the method and the X-Agent-Id header it saw; anything else answers 200 "ok".
A method "sleep/MS" waits MS milliseconds before answering (slow requests).
usage: upstream.py PORT
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, code, body, ctype="application/json"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200, "ok\n", "text/plain")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            msg = json.loads(raw)
        except ValueError:
            self._send(200, "ok\n", "text/plain")
            return
        if isinstance(msg, dict) and "id" in msg and "method" in msg:
            m = str(msg["method"])
            if m.startswith("sleep/"):
                time.sleep(int(m[6:]) / 1000.0)
            res = {"jsonrpc": "2.0", "id": msg["id"],
                   "result": {"method": msg["method"],
                              "agent": self.headers.get("X-Agent-Id")}}
            self._send(200, json.dumps(res))
        else:
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()


def main():
    port = int(sys.argv[1])
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
