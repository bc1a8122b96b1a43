#!/usr/bin/env python3
"""An OCSP responder for tests: `openssl ocsp -index` answers every request, behind a
small HTTP front bound to 127.0.0.1 only (openssl ocsp -port binds every interface).
Each POST runs `openssl ocsp -index INDEX -CA CA -rsigner CERT -rkey KEY -reqin ...
-respout ...` afresh, so a revocation written to INDEX counts at the next request.

  ocsp_responder.py PORT INDEX CA RSIGNER RKEY [--nmin N] [--control FILE] [--log FILE]

--control names a file the test writes to change behaviour for later requests:
  normal        answer (the default)
  slow SECONDS  answer after a delay
  garbage       200 with bytes that are not an OCSP response
  http500       an HTTP error
  replay FILE   answer with the DER response in FILE, whatever was asked (a stale
                or foreign answer: its nonce will not match)
  save FILE     answer normally and also keep the answer in FILE
--log appends one line per request: the behaviour used."""
import http.server
import os
import subprocess
import sys
import tempfile
import time


def main():
    args = sys.argv[1:]
    port, index, ca, rsigner, rkey = args[:5]
    opts = {"--nmin": "1", "--control": None, "--log": None}
    rest = args[5:]
    while rest:
        opts[rest[0]] = rest[1]
        rest = rest[2:]

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            req = self.rfile.read(n)
            mode = ["normal"]
            if opts["--control"] and os.path.exists(opts["--control"]):
                mode = open(opts["--control"]).read().split() or ["normal"]
            if opts["--log"]:
                with open(opts["--log"], "a") as f:
                    f.write(" ".join(mode) + "\n")
            if mode[0] == "http500":
                self.send_error(500)
                return
            if mode[0] == "garbage":
                self.reply(b"\x30\x03\x0a\x01\x00 not ocsp")
                return
            if mode[0] == "replay":
                self.reply(open(mode[1], "rb").read())
                return
            if mode[0] == "slow":
                time.sleep(float(mode[1]))
            with tempfile.TemporaryDirectory() as d:
                rq, rs = os.path.join(d, "req.der"), os.path.join(d, "resp.der")
                open(rq, "wb").write(req)
                r = subprocess.run(["openssl", "ocsp", "-index", index, "-CA", ca,
                                    "-rsigner", rsigner, "-rkey", rkey, "-reqin", rq,
                                    "-respout", rs, "-nmin", opts["--nmin"]],
                                   capture_output=True)
                if r.returncode != 0 or not os.path.exists(rs):
                    sys.stderr.write(r.stderr.decode())
                    self.send_error(500)
                    return
                resp = open(rs, "rb").read()
            if mode[0] == "save":
                open(mode[1], "wb").write(resp)
            self.reply(resp)

        def reply(self, body):
            self.send_response(200)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), H).serve_forever()


if __name__ == "__main__":
    main()
