#!/bin/bash
# A slow token never stalls the event loop. One worker thread (so every connection
# shares one loop), token signatures delayed by 2 s (p11fault sign_delay_ms):
#  1. a keep-alive connection K is established (undelayed) and served once;
#  2. the delay is switched on and a new handshake S starts; /metrics shows its
#     signature in flight;
#  3. a request on K is answered BEFORE S's handshake completes, and S's signature
#     is still in flight when K's response has arrived;
#  4. S then completes and is served.
# Asserted by the order of events, not by wall-clock thresholds. With
# signer.async false the same script fails (K's answer waits for the signature).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
. "$HERE/async_common.sh"
cg_setup
async_setup 1
if [ "${ASYNC_TEST_SYNC:-0}" = 1 ]; then
	async_cfg "$CFG" '{"signer": {"async": false}}'
fi
gw_start "$CFG" "$T/gw.log"

python3 - "$GW_PORT" "$CG_ADMIN_PORT" "$CA" "$AGENT/cert.pem" "$AGENT/key.pem" \
    "$P11FAULT_CONTROL" "$T/ping.req" >"$T/order.out" 2>&1 <<'EOF' || { cat "$T/order.out" >&2; cg_fail "ordering check failed"; }
import socket, ssl, sys, threading, time, urllib.request

port, admin, ca, cert, key, ctl, reqfile = sys.argv[1:8]
port = int(port)
req = open(reqfile, "rb").read()
events = []
lock = threading.Lock()

def event(what):
    with lock:
        events.append(what)
    print("event:", what, flush=True)

def inflight():
    try:
        body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % admin, timeout=5).read().decode()
    except OSError:
        return -1
    for line in body.splitlines():
        if line.startswith("certgate_signer_inflight "):
            return int(float(line.split()[1]))
    return -1

def connect():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    return ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)

def request(s):
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("keep-alive connection closed")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        body += s.recv(4096)
    return head.split(b"\r\n")[0].decode()

k = connect()
k.do_handshake()
status = request(k)
if " 200 " not in status:
    raise SystemExit("first request on K: " + status)
print("K established and served:", status, flush=True)

open(ctl, "w").write("sign_delay_ms=2000\n")
time.sleep(0.3)

slow_ok = []
def slow():
    s = connect()
    try:
        s.do_handshake()
        event("S handshake done")
        slow_ok.append(request(s))
    except Exception as e:
        event("S failed: %r" % e)

t = threading.Thread(target=slow)
t.start()
# Wait (by state, not by time) until S's signature is in the token.
for _ in range(100):
    n = inflight()
    if n >= 1:
        break
    if events:
        break
    time.sleep(0.05)
else:
    raise SystemExit("S's signature never showed up as in flight (%d)" % n)
print("signatures in flight:", n, flush=True)

status = request(k)
event("K response " + status)
still = inflight()
print("signatures in flight after K's response:", still, flush=True)
t.join(30)
open(ctl, "w").write("")

print("order:", events, flush=True)
if not events or not events[0].startswith("K response") or " 200 " not in events[0]:
    raise SystemExit("K's response did not come first: %r" % events)
if still < 1:
    raise SystemExit("S's signature was no longer in flight when K was answered")
if len(events) < 2 or events[1] != "S handshake done" or not slow_ok or " 200 " not in slow_ok[0]:
    raise SystemExit("S did not complete after the signature: %r %r" % (events, slow_ok))
print("ok", flush=True)
EOF
cat "$T/order.out"
gw_stop
cg_pass
