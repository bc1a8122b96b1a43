#!/bin/bash
# Failing and saturated tokens fail only the handshakes concerned; the gateway keeps
# serving. One signer thread, queue 1, timeout 3 s:
#  - sign_error=CKR_DEVICE_ERROR: the handshake gets an alert, the error is logged
#    and counted, the next handshake (error cleared) succeeds;
#  - full queue: sign_delay_ms=1000 and 5 simultaneous handshakes: one signs, one
#    waits in the queue, three are refused at once (before any signature is done),
#    counted in certgate_signer_refused_total; the first two complete;
#  - timeout: sign_delay_ms=4000 > timeout_ms: the handshake fails ("timed out"),
#    counted, and the gateway serves the next one;
#  - an established keep-alive connection is served throughout.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
. "$HERE/async_common.sh"
cg_setup
async_setup 2
async_cfg "$CFG" '{"signer": {"threads": 1, "queue": 1, "timeout_ms": 3000}}'
gw_start "$CFG" "$T/gw.log"
gw_log_contains "signer pool: 1 threads, queue 1" || cg_fail "signer settings not applied"

served() {
	async_client "$T/served.out" --request "$T/ping.req"
	grep -q "response: HTTP/1.1 200" "$T/served.out" ||
	    { cat "$T/served.out" >&2; cg_fail "not served: $1"; }
}

# A keep-alive connection that sends a request every 300 ms for the whole test.
async_client "$T/keep.out" --request "$T/ping.req" --repeat 60 --keepalive-gap-ms 300 \
    --timeout-ms 30000 &
KEEP=$!
cg_track_pid "$KEEP"
for i in $(seq 1 50); do
	grep -q "response: HTTP/1.1 200" "$T/keep.out" 2>/dev/null && break
	sleep 0.1
done
cg_assert_contains "$T/keep.out" "response: HTTP/1.1 200"

# --- sign error ------------------------------------------------------------------------
async_ctl sign_error=CKR_DEVICE_ERROR
async_client "$T/err.out" --request "$T/ping.req"
cg_assert_contains "$T/err.out" "handshake: failed"
gw_wait_log "token signature failed.*(Device error|DEVICE_ERROR)" 5 ||
    cg_fail "sign failure not logged with the token's error"
cg_assert_eq "$(async_metric 'certgate_signer_signs_total{result="error"}')" 1 "sign errors"
async_ctl ""
served "after a sign error"

# --- full queue --------------------------------------------------------------------------
async_ctl sign_delay_ms=1000
for i in 1 2 3 4 5; do
	async_client "$T/q$i.out" --request "$T/ping.req" --timeout-ms 10000 &
	cg_track_pid $!
done
# Ordering: three refusals are complete while no handshake has succeeded yet (a
# success needs at least one 1 s signature).
for i in $(seq 1 100); do
	nfail=$(cat "$T"/q?.out 2>/dev/null | grep -c "handshake: failed" || true)
	[ "$nfail" -ge 3 ] && break
	sleep 0.05
done
nok=$(cat "$T"/q?.out 2>/dev/null | grep -c "handshake: ok" || true)
echo "full queue: $nfail refused while $nok succeeded"
[ "$nfail" -ge 3 ] || cg_fail "expected 3 quick refusals, got $nfail"
cg_assert_eq "$nok" 0 "handshakes done before the refusals"
for i in $(seq 1 60); do
	nok=$(cat "$T"/q?.out | grep -c "response: HTTP/1.1 200" || true)
	[ "$nok" -ge 2 ] && break
	sleep 0.1
done
cg_assert_eq "$nok" 2 "handshakes served (one signing, one queued)"
cg_assert_eq "$(async_metric certgate_signer_refused_total)" 3 "refused by the queue"
gw_wait_log "signer busy" 1 || cg_fail "queue refusal not logged"
async_ctl ""
served "after the queue was full"

# --- timeout -----------------------------------------------------------------------------
async_ctl sign_delay_ms=4000
async_client "$T/slow.out" --request "$T/ping.req" --timeout-ms 10000
cg_assert_contains "$T/slow.out" "handshake: failed"
gw_wait_log "handshake failed from .*timed out" 2 || cg_fail "timeout not logged"
cg_assert_eq "$(async_metric 'certgate_signer_signs_total{result="timeout"}')" 1 "timeouts"
async_ctl ""
# The single thread is still in the slow C_Sign for about a second: this one queues.
served "after a timeout"

# --- the keep-alive connection was never cut -----------------------------------------------
wait "$KEEP" || true
n=$(grep -c "response: HTTP/1.1 200" "$T/keep.out" || true)
echo "keep-alive connection: $n responses"
cg_assert_eq "$n" 60 "keep-alive responses"
cg_assert_not_contains "$T/keep.out" "closed by peer"
gw_stop
cg_pass
