#!/bin/bash
# TLS resumption across the instances of a cluster (README "Running several
# instances", src/ticketkeys.c): two instances sharing ticket keys through Redis,
# cluster.ticket_rotate_s 4. Checked:
# - a ticket from one instance resumes on the other (TLS 1.3 and 1.2; tlsclient and
#   openssl s_client -sess_out/-sess_in, "Reused, TLSv1.3"), and the ticket the
#   resumption renewed resumes again on the first;
# - after one rotation a ticket from before still resumes (previous key, renewed);
#   after two it does not (full handshake, the request still served); the renewed
#   ticket does;
# - a revoked certificate's ticket does not resume on either instance (the ticket
#   decrypts, the session is refused, the full handshake fails on the CRL);
# - Redis restarted (empty) while the keys live: the instances offer theirs back, a
#   ticket from before still resumes on the other instance;
# - Redis stopped: the keys held keep working until they age out (2 rotations at
#   most), then no ticket is issued or accepted; Redis restarted: tickets again;
# - the key bytes (hex, base64 or raw) never appear in a log.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
. "$HERE/cluster.sh"
cg_setup
command -v redis-server >/dev/null || cg_fail "redis-server not installed (scripts/test installs it)"

R=4     # cluster.ticket_rotate_s
UP_PORT=$(cg_free_port)
RPORT=$(cg_free_port)
gw_tool_upstream "$UP_PORT" "$T/up.log"
redis_start

PKI=$T/pki
gw_soft_pki "$PKI" 1 "http://127.0.0.1:$UP_PORT/" || cg_fail "soft PKI"
for a in alice bob; do
	gw_soft_issue "$PKI" "$a" || cg_fail "issue $a"
done
cluster_dirs 2 "$PKI" 'import json, sys
c = json.load(open(sys.argv[1]))
c["cluster"]["ticket_rotate_s"] = '"$R"'
json.dump(c, open(sys.argv[1], "w"), indent=1)'
inst_start 0
inst_start 1
gw_rpc_request "$T/ping.req" ping

client() {      # client AGENT INSTANCE OUT ARGS...
	local agent=$1 i=$2 out=$3
	shift 3
	"$TLSCLIENT" --connect "127.0.0.1:${PORTS[i]}" --ca "$PKI/ca/ca.pem" \
	    --cert "$PKI/agents/$agent/cert.pem" --key "$PKI/agents/$agent/key.pem" \
	    --request "$T/ping.req" "$@" >"$out" 2>&1 || true
}
redis_now() { redis-cli -p "$RPORT" time | tr '\n' ' ' | awk '{ printf "%d.%06d\n", $1, $2 }'; }
epoch_now() { python3 -c "import sys; print(int(float(sys.argv[1]) // $R))" "$(redis_now)"; }
# sleep_into_epoch OFFSET [EPOCH]: sleeps until OFFSET seconds into EPOCH (default
# the next one) on Redis's clock; prints that epoch; fails when it has begun already.
sleep_into_epoch() {
	python3 - "$(redis_now)" "$1" "$R" "${2:-}" <<'EOF'
import sys, time
now, off, r = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
e = int(sys.argv[4]) if sys.argv[4] else int(now // r) + 1
if e * r <= now:
    sys.exit("epoch %d began already: the machine is too slow for this test" % e)
time.sleep(e * r + off - now)
print(e)
EOF
}
# The key bytes held in Redis now, one hex line per key.
save_keys() {
	local k
	for k in $(redis-cli -p "$RPORT" --scan --pattern 'certgate:tk:*'); do
		redis-cli -p "$RPORT" eval "local v=redis.call('GET',KEYS[1]) local h='' \
for i=1,#v do h=h..string.format('%02x',v:byte(i)) end return h" 1 "$k" >>"$T/keys.hex"
	done
}
wait_metric() { # wait_metric I NAME OP VALUE SECONDS
	local n
	for n in $(seq 1 $(($5 * 10))); do
		[ "$(metric "$1" "$2")" "$3" "$4" ] && return 0
		sleep 0.1
	done
	return 1
}

# --- gw1's ticket on gw0, TLS 1.2; openssl s_client -------------------------------------
client alice 1 "$T/full12.out" --tls1.2 --sess-out "$T/a12.sess"
client alice 0 "$T/cross12.out" --tls1.2 --sess-in "$T/a12.sess" --expect-resumed
cg_assert_contains "$T/full12.out" "protocol: TLSv1.2"
cg_assert_contains "$T/cross12.out" "resumed: yes"
cg_assert_contains "$T/cross12.out" "response: HTTP/1.1 200"
# openssl s_client: the ticket arrives after the handshake, so stdin stays open 1 s.
sclient() {
	sleep 1 | openssl s_client -connect "127.0.0.1:${PORTS[$1]}" -CAfile "$PKI/ca/ca.pem" \
	    -cert "$PKI/agents/alice/cert.pem" -key "$PKI/agents/alice/key.pem" "${@:3}" \
	    >"$2" 2>&1 || true
}
sclient 0 "$T/s0.out" -sess_out "$T/s.pem"
sclient 1 "$T/s1.out" -sess_in "$T/s.pem"
cg_assert_contains "$T/s0.out" "New, TLSv1.3"
cg_assert_contains "$T/s1.out" "Reused, TLSv1.3"
# a ticket renewed by a resumption resumes again (a client uses each ticket once)
client alice 0 "$T/ch1.out" --sess-out "$T/c1.sess"
client alice 1 "$T/ch2.out" --sess-in "$T/c1.sess" --sess-out "$T/c2.sess" --expect-resumed
client alice 0 "$T/ch3.out" --sess-in "$T/c2.sess" --expect-resumed
cg_assert_contains "$T/ch2.out" "resumed: yes"
cg_assert_contains "$T/ch3.out" "resumed: yes"

# --- across instances, within one epoch ----------------------------------------------
E=
for attempt in 1 2 3; do
	E=$(sleep_into_epoch 0.2)
	client alice 0 "$T/full.out" --sess-out "$T/a.sess"
	client alice 1 "$T/cross.out" --sess-in "$T/a.sess" --expect-resumed
	[ "$(epoch_now)" = "$E" ] && break       # both within epoch E: go on
	E=
done
[ -n "$E" ] || cg_fail "three attempts could not fit two handshakes in a $R s epoch"
cg_assert_contains "$T/full.out" "resumed: no"
cg_assert_contains "$T/full.out" "protocol: TLSv1.3"
cg_assert_contains "$T/full.out" "response: HTTP/1.1 200"
cg_assert_contains "$T/cross.out" "resumed: yes"
cg_assert_contains "$T/cross.out" "response: HTTP/1.1 200"
echo "resumed across instances (TLS 1.3 and 1.2, tlsclient and s_client), epoch $E"
save_keys
[ -n "$(redis-cli -p "$RPORT" get "certgate:tk:$E")" ] || cg_fail "no key certgate:tk:$E in Redis"
ttl=$(redis-cli -p "$RPORT" ttl "certgate:tk:$E")
[ "$ttl" -gt 0 ] && [ "$ttl" -le $((2 * R)) ] || cg_fail "key TTL $ttl (want 1..$((2 * R)): the end of the next epoch)"
[ "$(metric 1 'certgate_cluster_tickets_decrypted_total{key="current_key"}')" -ge 1 ] ||
    cg_fail "gw1 did not count gw0's ticket under the current key"

# --- one rotation: the ticket from before still resumes (and is renewed) -------------
E1=$(sleep_into_epoch 0.5 $((E + 1))) || cg_fail "epoch $((E + 1))"
wait_metric 1 certgate_cluster_ticket_key_rotations_total -ge 2 3 || cg_fail "gw1 did not rotate"
client alice 1 "$T/rot1.out" --sess-in "$T/a.sess" --sess-out "$T/a2.sess" --expect-resumed
cg_assert_contains "$T/rot1.out" "resumed: yes"
[ "$(metric 1 'certgate_cluster_tickets_decrypted_total{key="previous_key"}')" -ge 1 ] ||
    cg_fail "gw1 did not count a ticket under the previous key"
save_keys

# --- two rotations: it no longer does; the renewed one does ---------------------------
E2=$(sleep_into_epoch 0.5 $((E + 2))) || cg_fail "epoch $((E + 2))"
client alice 0 "$T/rot2.out" --sess-in "$T/a.sess"
cg_assert_contains "$T/rot2.out" "resumed: no"
cg_assert_contains "$T/rot2.out" "response: HTTP/1.1 200"
client alice 0 "$T/rot2b.out" --sess-in "$T/a2.sess" --expect-resumed
cg_assert_contains "$T/rot2b.out" "resumed: yes"
cg_assert_eq "$(redis-cli -p "$RPORT" exists "certgate:tk:$E")" 0 "key $E expired in Redis"
save_keys
echo "rotation: epoch $E ticket resumed in $E1 (renewed), refused in $E2"

# --- a revoked certificate's ticket does not resume ---------------------------------
client bob 0 "$T/bob.out" --sess-out "$T/bob.sess"
cg_assert_contains "$T/bob.out" "response: HTTP/1.1 200"
client bob 1 "$T/bob1.out" --sess-in "$T/bob.sess" --expect-resumed
cg_assert_contains "$T/bob1.out" "resumed: yes"
refused_before=$(metric 1 certgate_cluster_tickets_refused_total)
gw_soft_revoke "$PKI" bob || cg_fail "revoke bob"
cp "$PKI/ca/crl.pem" "${DIRS[0]}/ca/crl.pem.new"
mv "${DIRS[0]}/ca/crl.pem.new" "${DIRS[0]}/ca/crl.pem"
for _ in $(seq 1 30); do
	cmp -s "$PKI/ca/crl.pem" "${DIRS[1]}/ca/crl.pem" && break
	sleep 0.1
done
cmp -s "$PKI/ca/crl.pem" "${DIRS[1]}/ca/crl.pem" || cg_fail "the CRL did not reach gw1 within 3 s"
sleep 0.3       # the reload after the file
for i in 1 0; do
	client bob "$i" "$T/bobrev$i.out" --sess-in "$T/bob.sess"
	cg_assert_not_contains "$T/bobrev$i.out" "resumed: yes"
	cg_assert_not_contains "$T/bobrev$i.out" "response: HTTP/1.1 200"
	cg_assert_contains "$T/bobrev$i.out" "handshake: failed"
done
[ "$(metric 1 certgate_cluster_tickets_refused_total)" -gt "$refused_before" ] ||
    cg_fail "gw1 did not refuse bob's ticket itself (certgate_cluster_tickets_refused_total)"
client alice 1 "$T/alice_after.out"
cg_assert_contains "$T/alice_after.out" "response: HTTP/1.1 200"

# --- Redis restarted (empty) while the keys live: they are offered back -------------
key_hex() { redis-cli -p "$RPORT" eval "local v=redis.call('GET',KEYS[1]) if not v then return '' end \
local h='' for i=1,#v do h=h..string.format('%02x',v:byte(i)) end return h" 1 "certgate:tk:$1"; }
EQ=$(sleep_into_epoch 0.2)
client alice 0 "$T/q.out" --sess-out "$T/q.sess"
KQ=$(key_hex "$EQ")
[ -n "$KQ" ] || cg_fail "no key for epoch $EQ"
redis_stop
redis_start
for _ in $(seq 1 30); do
	[ -n "$(key_hex "$EQ")" ] && break
	sleep 0.1
done
cg_assert_eq "$(key_hex "$EQ")" "$KQ" "the key of epoch $EQ after Redis restarted (the held one, not a new one)"
client alice 1 "$T/q1.out" --sess-in "$T/q.sess" --expect-resumed
cg_assert_contains "$T/q1.out" "resumed: yes"
echo "Redis restarted: the key of epoch $EQ came back from the instances"

# --- Redis stopped: held keys work until they age out, then no tickets ----------------
client alice 0 "$T/pre_down.out" --sess-out "$T/d.sess"
redis_stop
client alice 1 "$T/down1.out" --sess-in "$T/d.sess" --expect-resumed
cg_assert_contains "$T/down1.out" "resumed: yes"
# The newest key lives until the end of the epoch after its own: 2 R at most.
wait_metric 0 certgate_cluster_ticket_keys -eq 0 $((2 * R + 3)) || cg_fail "gw0 still holds keys $((2 * R + 3)) s after Redis stopped"
wait_metric 1 certgate_cluster_ticket_keys -eq 0 3 || cg_fail "gw1 still holds keys"
client alice 1 "$T/down2.out" --sess-in "$T/d.sess"
cg_assert_contains "$T/down2.out" "resumed: no"
cg_assert_contains "$T/down2.out" "response: HTTP/1.1 200"
[ "$(metric 1 certgate_cluster_tickets_not_issued_total)" -ge 1 ] || cg_fail "gw1 issued a ticket without a key"
grep -q "aged out" "${DIRS[1]}/gw.log" || cg_fail "gw1 did not log that its keys aged out"
grep -q "cannot fetch the shared TLS ticket keys" "${DIRS[1]}/gw.log" || cg_fail "gw1 did not log the failed fetch"

# --- Redis restarted (empty): both converge on one new key --------------------------
redis_start
wait_metric 0 certgate_cluster_ticket_keys -ge 1 10 || cg_fail "gw0 has no keys 10 s after Redis came back"
wait_metric 1 certgate_cluster_ticket_keys -ge 1 10 || cg_fail "gw1 has no keys 10 s after Redis came back"
client alice 0 "$T/back0.out" --sess-out "$T/b.sess"
client alice 1 "$T/back1.out" --sess-in "$T/b.sess" --expect-resumed
cg_assert_contains "$T/back1.out" "resumed: yes"
save_keys

# --- never logged ----------------------------------------------------------------------
python3 - "$T/keys.hex" "${DIRS[0]}" "${DIRS[1]}" <<'EOF' || cg_fail "key bytes in a log"
import base64, binascii, os, sys
keys = set(l.strip() for l in open(sys.argv[1]) if len(l.strip()) == 160)
if len(keys) < 3:
    sys.exit("only %d keys seen" % len(keys))
logs = []
for d in sys.argv[2:]:
    for root, _, files in os.walk(d):
        for f in files:
            if f.endswith(".log") or "audit" in f:
                logs.append(os.path.join(root, f))
data = {p: open(p, "rb").read() for p in logs}
bad = 0
for k in keys:
    raw = binascii.unhexlify(k)
    for part in (raw[:16], raw[16:48], raw[48:]):
        forms = [part, part.hex().encode(), part.hex().upper().encode(),
                 base64.b64encode(part)[:20]]
        for p, d in data.items():
            for f in forms:
                if f in d:
                    print("key material in", p)
                    bad += 1
print("%d keys, %d logs searched" % (len(keys), len(data)))
sys.exit(1 if bad else 0)
EOF

for i in 0 1; do
	kill -TERM "${PIDS[i]}"
	rc=0
	wait "${PIDS[i]}" || rc=$?
	[ "$rc" -eq 0 ] || { tail -30 "${DIRS[i]}/gw.log" >&2; cg_fail "gw$i exited with $rc after SIGTERM"; }
	if grep -q "Sanitizer" "${DIRS[i]}/gw.log"; then
		grep -A20 "Sanitizer" "${DIRS[i]}/gw.log" | head -40 >&2
		cg_fail "sanitizer report in gw$i's log"
	fi
done
cg_pass
