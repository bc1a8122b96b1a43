#!/usr/bin/env python3
"""EST (RFC 7030) stand-in for the certgate agent tests, made of standard tools:
Python's ssl module for HTTPS and `openssl ca` for issuing, on the software CA that
tests/integration/gw.sh's gw_soft_pki makes (the one the test gateway trusts).

It speaks the wire format the agent's client must handle, and nothing more:
  GET  /.well-known/est/cacerts        200 application/pkcs7-mime, base64 (64-column
                                       lines) of a DER certs-only PKCS#7 with the CA
  POST /.well-known/est/simpleenroll   Content-Type application/pkcs10, body base64 of
                                       a DER CSR, Authorization: Basic base64(ID:TOKEN);
                                       a token works once, for its ID only (else 401)
  POST /.well-known/est/simplereenroll the same, authenticated by a client certificate
                                       the CA issued (its SAN URI names the agent);
                                       without one 403
Answers to enrollments: 200 application/pkcs7-mime; smime-type=certs-only with the
new certificate (subject CN=ID, SAN URI spiffe://certgate.local/agent/ID, lifetime
--lifetime-s). Every request is one JSON line in --log: {"op", "agent", "status"}.

usage: est_standin.py --port P --dir SOFTPKI --tokens FILE --log FILE [--lifetime-s N]
  FILE of tokens: one "ID TOKEN" per line (read on every request)
"""
import argparse
import base64
import datetime
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
ARGS = None
USED = set()


def log(op, agent, status):
    with LOCK:
        with open(ARGS.log, "a") as f:
            f.write(json.dumps({"op": op, "agent": agent, "status": status}) + "\n")


def b64_lines(der):
    s = base64.b64encode(der).decode()
    return "".join(s[i:i + 64] + "\n" for i in range(0, len(s), 64)).encode()


def pkcs7_of(pem_path):
    der = subprocess.run(["openssl", "crl2pkcs7", "-nocrl", "-certfile", pem_path,
                          "-outform", "DER"], check=True, capture_output=True).stdout
    return b64_lines(der)


def stamp(t):
    return t.strftime("%Y%m%d%H%M%SZ")


def issue(agent, csr_der):
    """Returns the PEM path of a new certificate for agent, or None."""
    with LOCK, tempfile.TemporaryDirectory() as tmp:
        req = os.path.join(tmp, "req.der")
        out = os.path.join(tmp, "cert.pem")
        with open(req, "wb") as f:
            f.write(csr_der)
        # The CSR must verify (proof of possession of the key).
        v = subprocess.run(["openssl", "req", "-inform", "DER", "-in", req, "-verify",
                            "-noout"], capture_output=True)
        if v.returncode != 0:
            return None
        pem = os.path.join(tmp, "req.pem")
        subprocess.run(["openssl", "req", "-inform", "DER", "-in", req, "-out", pem],
                       check=True, capture_output=True)
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        end = now + datetime.timedelta(seconds=ARGS.lifetime_s)
        env = dict(os.environ, GW_SAN="URI:spiffe://certgate.local/agent/" + agent)
        r = subprocess.run(["openssl", "ca", "-batch", "-config",
                            os.path.join(ARGS.dir, "ca", "openssl.cnf"),
                            "-extensions", "agent_ext", "-subj", "/CN=" + agent,
                            "-startdate", stamp(now), "-enddate", stamp(end),
                            "-in", pem, "-out", out, "-notext"], env=env,
                           capture_output=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr.decode())
            return None
        with open(out, "rb") as f:
            data = f.read()
    keep = os.path.join(ARGS.dir, "est-issued-%s.pem" % agent)
    with open(keep, "wb") as f:
        f.write(data)
    return keep


def token_ok(agent, token):
    try:
        with open(ARGS.tokens) as f:
            pairs = [l.split() for l in f if l.strip()]
    except OSError:
        return False
    key = (agent, token)
    with LOCK:
        if key in USED or [agent, token] not in pairs:
            return False
        USED.add(key)
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, code, body=b"", ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/.well-known/est/cacerts":
            log("get", None, 404)
            return self.send(404, b"not found\n")
        log("cacerts", None, 200)
        self.send(200, pkcs7_of(os.path.join(ARGS.dir, "ca", "ca.pem")),
                  "application/pkcs7-mime")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        op = self.path.rsplit("/", 1)[-1]
        if op not in ("simpleenroll", "simplereenroll") or \
                not self.path.startswith("/.well-known/est/"):
            log(op, None, 404)
            return self.send(404, b"not found\n")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != \
                "application/pkcs10":
            log(op, None, 415)
            return self.send(415, b"want application/pkcs10\n")
        agent = None
        if op == "simpleenroll":
            auth = self.headers.get("Authorization") or ""
            try:
                user, token = base64.b64decode(auth.split(" ", 1)[1]).decode().split(":", 1)
            except (IndexError, ValueError, UnicodeDecodeError):
                user = token = None
            if not auth.startswith("Basic ") or not user or not token_ok(user, token):
                log(op, user, 401)
                return self.send(401, b"bad, used or expired token\n")
            agent = user
        else:
            peer = self.connection.getpeercert()
            for kind, value in (peer or {}).get("subjectAltName", ()):
                if kind == "URI" and value.startswith("spiffe://certgate.local/agent/"):
                    agent = value.rsplit("/", 1)[1]
            if agent is None:
                log(op, None, 403)
                return self.send(403, b"renewal needs the current certificate\n")
        try:
            csr = base64.b64decode(body, validate=False)
        except ValueError:
            log(op, agent, 400)
            return self.send(400, b"body is not base64\n")
        cert = issue(agent, csr)
        if cert is None:
            log(op, agent, 400)
            return self.send(400, b"bad certificate request\n")
        log(op, agent, 200)
        self.send(200, pkcs7_of(cert), "application/pkcs7-mime; smime-type=certs-only")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--lifetime-s", type=int, default=86400)
    ARGS = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(ARGS.dir, "server", "cert.pem"),
                        os.path.join(ARGS.dir, "server", "key.pem"))
    ctx.load_verify_locations(os.path.join(ARGS.dir, "ca", "ca.pem"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    srv.daemon_threads = True
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("est stand-in on https://127.0.0.1:%d" % ARGS.port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
