"""Helpers for the hostile-client cases (tests/hostile/hostile.py): TLS connections
with a client certificate, raw HTTP writes and a tolerant response reader. Only the
standard library's ssl and socket modules are used, so every byte on the wire is
what the case wrote."""
import socket
import ssl
import time


class Target:
    """Where the gateway listens and which credentials a case presents."""

    def __init__(self, host, port, ca, cert, key):
        self.host, self.port = host, port
        self.ca, self.cert, self.key = ca, cert, key


class Outcome:
    """What the peer did: a response (status, headers, body), a close, a TLS error
    or nothing within the time allowed."""

    def __init__(self, kind, status=None, headers=None, body=b"", detail="", elapsed=0.0):
        self.kind = kind            # "response" | "closed" | "tls-error" | "timeout"
        self.status = status
        self.headers = headers or {}
        self.body = body
        self.detail = detail
        self.elapsed = elapsed

    def __str__(self):
        if self.kind == "response":
            return "HTTP %s after %.2fs (%s)" % (self.status, self.elapsed,
                                                 self.body[:120].decode("latin-1"))
        return "%s after %.2fs%s" % (self.kind, self.elapsed,
                                      ": " + self.detail if self.detail else "")


def client_context(t, cert=None, key=None, min_version=None, max_version=None,
                   ciphers=None):
    """A client context trusting the gateway's CA, presenting cert/key (the target's
    by default; cert=False presents none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(t.ca)
    ctx.check_hostname = False
    if cert is not False:
        ctx.load_cert_chain(cert or t.cert, key or t.key)
    if ciphers:
        ctx.set_ciphers(ciphers)
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def tls_connect(t, ctx=None, timeout=10.0):
    """Connects and completes the handshake; raises ssl.SSLError / OSError on
    failure."""
    ctx = ctx or client_context(t)
    raw = socket.create_connection((t.host, t.port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def send_quietly(s, data):
    """Writes data; returns None or the error that stopped the write (the gateway
    may answer and close before reading everything, which is fine)."""
    try:
        s.sendall(data)
        return None
    except (OSError, ssl.SSLError) as e:
        return e


def _complete(buf, max_body):
    """True when buf holds a whole response (head plus its framed body)."""
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    hdrs = parse_head(head)
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        return rest.endswith(b"0\r\n\r\n")
    try:
        clen = int(hdrs.get("content-length", "0") or 0)
    except ValueError:
        clen = 0
    return len(rest) >= min(clen, max_body)


def read_outcome(s, timeout, max_body=1 << 20, t0=None, initial=b""):
    """Reads one HTTP response (or the close / error that replaces it) within
    timeout seconds from now; initial holds bytes already received."""
    t0 = t0 if t0 is not None else time.monotonic()
    deadline = time.monotonic() + timeout
    buf = initial
    while not _complete(buf, max_body):
        left = deadline - time.monotonic()
        if left <= 0:
            if buf:
                break
            return Outcome("timeout", elapsed=time.monotonic() - t0)
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ssl.SSLError as e:
            if buf:
                break
            return Outcome("tls-error", detail=str(e), elapsed=time.monotonic() - t0)
        except OSError as e:
            if buf:
                break
            return Outcome("closed", detail=str(e), elapsed=time.monotonic() - t0)
        if not chunk:
            break
        buf += chunk
    elapsed = time.monotonic() - t0
    if not buf:
        return Outcome("closed", detail="EOF", elapsed=elapsed)
    head, sep, rest = buf.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return Outcome("closed", detail="non-HTTP bytes: %r" % buf[:80], elapsed=elapsed)
    return Outcome("response", status=int(parts[1]), headers=parse_head(head), body=rest,
                   elapsed=elapsed)


def parse_head(head):
    hdrs = {}
    for ln in head.split(b"\r\n")[1:]:
        k, _, v = ln.decode("latin-1").partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return hdrs


def wait_closed(s, timeout):
    """Waits up to timeout seconds for the peer to close (EOF, reset, alert) while
    discarding what it sends. Returns (closed, seconds, data received)."""
    t0 = time.monotonic()
    got = b""
    while True:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            return False, time.monotonic() - t0, got
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError):
            return True, time.monotonic() - t0, got
        if not chunk:
            return True, time.monotonic() - t0, got
        got += chunk


def drip(s, data, interval, give_up_after):
    """Sends data one byte every `interval` seconds and stops when the peer closes
    or answers, or after give_up_after seconds. Returns (outcome, bytes sent)."""
    t0 = time.monotonic()
    sent = 0
    for b in data:
        if time.monotonic() - t0 > give_up_after:
            break
        if send_quietly(s, bytes([b])) is not None:
            return read_outcome(s, 1.0, t0=t0), sent
        sent += 1
        # Watch for an answer or a close while waiting for the next byte.
        s.settimeout(interval)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except (ssl.SSLError, OSError) as e:
            return Outcome("closed", detail=str(e), elapsed=time.monotonic() - t0), sent
        if not chunk:
            return Outcome("closed", detail="EOF", elapsed=time.monotonic() - t0), sent
        return read_outcome(s, 2.0, t0=t0, initial=chunk), sent
    return Outcome("timeout", detail="%d bytes dripped" % sent,
                   elapsed=time.monotonic() - t0), sent


def request(method, path, headers=(), body=b"", host="localhost"):
    """Raw HTTP/1.1 request bytes; Content-Length added for a body unless a header
    list already frames it."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    names = [h.split(":", 1)[0].strip().lower() for h in headers]
    lines += list(headers)
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def rpc_body(marker, method="tools/call"):
    """A JSON-RPC call whose tool name carries the case marker, so the audit log
    can be searched for it."""
    return ('{"jsonrpc":"2.0","id":7,"method":"%s","params":{"name":"%s","arguments":{}}}'
            % (method, marker)).encode()


JSON_HEADERS = ["Content-Type: application/json",
                "Accept: application/json, text/event-stream"]
