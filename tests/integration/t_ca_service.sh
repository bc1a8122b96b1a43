#!/usr/bin/env bash
# The CA service as a process: every field of the protocol validated on arrival
# (malformed frames and requests are refused, the service keeps running), a slow or
# non-reading client does not block others, one service per socket, a stale socket
# after kill -9 is replaced; started and supervised by caproc (the gateway's code):
# restarted after kill -9, gone when its parent dies, even by kill -9.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/ca.sh"
cg_setup
cg_pki_init
P=$PKI
ca_serve_start

# --- the protocol, raw ------------------------------------------------------------------
python3 - "$CA_SOCK" <<'PY' || cg_fail "protocol cases"
import json, socket, struct, sys
path = sys.argv[1]

def conn():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(path)
    return s

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("closed after %d of %d bytes" % (len(b), n))
        b += c
    return b

def reply(s):
    n = struct.unpack(">I", recv_exact(s, 4))[0]
    return json.loads(recv_exact(s, n))

def frame(body):
    return struct.pack(">I", len(body)) + body

def one(data, want_ok, want_err=None, want_text=None):
    s = conn()
    s.sendall(data)
    r = reply(s)
    s.close()
    assert r["ok"] == want_ok, (data[:80], r)
    if want_err:
        assert r["error"] == want_err, (data[:80], r)
    if want_text:
        assert want_text in r["message"], (data[:80], r)
    return r

j = lambda o: frame(json.dumps(o).encode())
cases = [
    (struct.pack(">I", 0), False, "bad_request", "frame length"),
    (struct.pack(">I", 70000) + b"x" * 16, False, "bad_request", "frame length"),
    (frame(b"not json"), False, "bad_request", "not a JSON object"),
    (frame(b"[1,2]"), False, "bad_request", "not a JSON object"),
    (frame(b'{"v":1,"v":1,"op":"ping"}'), False, "bad_request", None),
    (j({"v": 2, "op": "ping"}), False, "bad_request", "version"),
    (j({"op": "ping"}), False, "bad_request", "version"),
    (j({"v": 1, "op": "mint", "cn": "root"}), False, "bad_request", "unknown op"),
    (j({"v": 1, "op": "ping", "x": 1}), False, "bad_request", "unknown field"),
    (j({"v": 1, "op": "enroll", "token": "t"}), False, "bad_request", "spki"),
    (j({"v": 1, "op": "enroll", "token": "t", "spki": "!!"}), False, "bad_request", "base64"),
    (j({"v": 1, "op": "enroll", "token": 5, "spki": "QUJD"}), False, "bad_request", "string"),
    (j({"v": 1, "op": "enroll", "token": "t t", "spki": "QUJD"}), False, "bad_request", None),
    (j({"v": 1, "op": "enroll", "token": "t", "spki": "QUJD", "roles": ["admin"]}), False, "bad_request", "unknown field"),
    (j({"v": 1, "op": "enroll", "token": "t", "spki": "QUJD", "agent": "../x"}), False, "bad_request", "agent"),
    (j({"v": 1, "op": "enroll", "token": "t", "spki": "QUJD", "lifetime": 99999}), False, "bad_request", "unknown field"),
    (j({"v": 1, "op": "enroll", "token": "t", "spki": "QUJD"}), False, "unauthorized", "token"),
    (j({"v": 1, "op": "renew", "cert": "QUJD", "spki": "QUJD"}), False, "bad_request", "not DER"),
    (j({"v": 1, "op": "ocsp", "ids": []}), False, "bad_request", "ids"),
    (j({"v": 1, "op": "ocsp", "ids": [{"hash": "md5", "name_hash": "00", "key_hash": "00", "serial": "01"}]}), False, "bad_request", "hash"),
    (j({"v": 1, "op": "ocsp", "ids": [{"hash": "sha1", "name_hash": "00", "key_hash": "00", "serial": "01"}]}), False, "bad_request", "hex"),
    (j({"v": 1, "op": "ocsp", "ids": [{"hash": "sha1", "name_hash": "0" * 40, "key_hash": "0" * 40, "serial": "-1"}]}), False, "bad_request", "serial"),
    (j({"v": 1, "op": "ocsp", "ids": [{"hash": "sha1", "name_hash": "0" * 40, "key_hash": "0" * 40, "serial": "1"}] * 17}), False, "bad_request", "ids"),
    (j({"v": 1, "op": "ping"}), True, None, None),
]
for data, ok, err, text in cases:
    one(data, ok, err, text)
# An OCSP request for another issuer is answered (unknown), signed.
r = one(j({"v": 1, "op": "ocsp", "ids": [{"hash": "sha1", "name_hash": "0" * 40, "key_hash": "0" * 40, "serial": "1"}]}), True)
assert r["ocsp"], r
# Pipelined requests on one connection are answered in order.
s = conn()
s.sendall(j({"v": 1, "op": "ping"}) + j({"v": 1, "op": "mint"}) + j({"v": 1, "op": "ping"}))
rs = [reply(s) for _ in range(3)]
assert [x["ok"] for x in rs] == [True, False, True], rs
s.close()
# A frame cut short, then close: nothing happens to the service.
s = conn()
s.sendall(struct.pack(">I", 100) + b'{"v":1')
s.close()
PY
"$CATOOL" ping "$CA_SOCK" | grep -q '^ok ' || cg_fail "the CA service stopped answering after bad requests"
grep -q "refused a malformed request" "$T/ca-serve.log" || cg_fail "malformed requests are not logged"

# --- a slow client and a client that never reads do not hold up the others --------------
python3 - "$CA_SOCK" "$CATOOL" <<'PY' || cg_fail "slow clients held up the service"
import json, socket, struct, subprocess, sys, time
path, catool = sys.argv[1], sys.argv[2]
slow = socket.socket(socket.AF_UNIX); slow.connect(path); slow.sendall(b"\x00\x00")
greedy = socket.socket(socket.AF_UNIX); greedy.connect(path)
ping = json.dumps({"v": 1, "op": "ping"}).encode()
greedy.setblocking(False)
sent = 0
try:
    for _ in range(20000):
        sent += greedy.send(struct.pack(">I", len(ping)) + ping)
except BlockingIOError:
    pass
t = time.time()
out = subprocess.run([catool, "ping", path], capture_output=True, text=True, timeout=30).stdout
assert out.startswith("ok "), out
assert time.time() - t < 10, time.time() - t
slow.close(); greedy.close()
PY
# The service did not buffer the greedy client's answers without bound.
rss=$(awk '/VmRSS/ {print $2}' "/proc/$CA_PID/status")
[ "$rss" -lt 100000 ] || cg_fail "the CA service grew to $rss KiB"

# --- one service per socket; a stale socket is replaced ----------------------------------
cg_expect_fail 1 "$CERTGATE_BIN" ca serve -c "$P/certgate.json"
cg_assert_contains "$T/err" "another CA service is running"
"$CATOOL" ping "$CA_SOCK" | grep -q '^ok ' || cg_fail "a refused second service broke the first"
kill -9 "$CA_PID"
wait "$CA_PID" 2>/dev/null || true
[ -S "$CA_SOCK" ] || cg_fail "expected a stale socket after kill -9"
"$CATOOL" ping "$CA_SOCK" | grep -q '^fail ' || cg_fail "a dead service answered"
ca_serve_start
ca_serve_stop

# --- caproc: started by posix_spawn, restarted after kill -9, gone with its parent ------
sup_out=$T/sup.out
CERTGATE_BIN=$CERTGATE_BIN "$CATOOL" supervise "$P/certgate.json" 60 >"$sup_out" 2>"$T/sup.err" &
sup=$!
cg_track_pid "$sup"
wait_line() {	# PATTERN: waits up to 30 s for a line in $sup_out
	local i
	for i in $(seq 1 300); do
		grep -Eq "$1" "$sup_out" && return 0
		sleep 0.1
	done
	cat "$sup_out" "$T/sup.err" >&2
	cg_fail "no line '$1' from catool supervise"
}
wait_line '^ready$'
wait_line '^child [1-9]'
c1=$(grep -m1 -E '^child [1-9]' "$sup_out" | cut -d' ' -f2)
tr '\0' ' ' <"/proc/$c1/cmdline" >"$T/cmdline"
cg_assert_contains "$T/cmdline" "ca serve -c $P/certgate.json --watch-fd 3"
# Only 0-3 open in the child: nothing of the parent leaked but its watch pipe.
fds=$(ls "/proc/$c1/fd" | sort -n | tr '\n' ' ')
case "$fds" in "0 1 2 3 "*) ;; *) cg_fail "child descriptors: $fds" ;; esac
wait_line "^ping ok $c1$"
kill -9 "$c1"
wait_line '^ping fail'
wait_line "^child [1-9][0-9]*$"
for i in $(seq 1 300); do
	c2=$(grep -E '^child [1-9]' "$sup_out" | tail -n1 | cut -d' ' -f2)
	[ "$c2" != "$c1" ] && break
	sleep 0.1
done
[ "$c2" != "$c1" ] || cg_fail "the CA service was not restarted"
wait_line "^ping ok $c2$"
grep -q "was killed by signal 9" "$T/sup.err" || cg_fail "the child's death is not logged"
# The parent dies by SIGKILL: the child sees end of file on its watch pipe and exits.
kill -9 "$sup"
wait "$sup" 2>/dev/null || true
for i in $(seq 1 100); do kill -0 "$c2" 2>/dev/null || break; sleep 0.1; done
kill -0 "$c2" 2>/dev/null && cg_fail "the CA service outlived its parent"
# A clean stop reaps the child.
CERTGATE_BIN=$CERTGATE_BIN "$CATOOL" supervise "$P/certgate.json" 2 >"$sup_out" 2>"$T/sup.err" ||
	{ cat "$T/sup.err" >&2; cg_fail "catool supervise failed"; }
cg_assert_contains "$sup_out" "stopped"
c3=$(grep -m1 -E '^child [1-9]' "$sup_out" | cut -d' ' -f2)
kill -0 "$c3" 2>/dev/null && cg_fail "caproc_stop left the child running"
# ca.service "external": caproc spawns nothing and uses the operator's service.
python3 - "$P/certgate.json" "$P/ext.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["ca"]["service"] = "external"
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
ca_serve_start "$P/ext.json"
CERTGATE_BIN=$CERTGATE_BIN "$CATOOL" supervise "$P/ext.json" 1 >"$sup_out" 2>"$T/sup.err" ||
	{ cat "$T/sup.err" >&2; cg_fail "catool supervise (external) failed"; }
cg_assert_contains "$sup_out" "ping ok $CA_PID"
cg_assert_not_contains "$sup_out" "child 1"
cg_assert_contains "$sup_out" "starts 0"
ca_serve_stop
cg_pass
