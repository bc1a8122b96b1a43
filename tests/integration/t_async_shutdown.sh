#!/bin/bash
# SIGTERM while token signatures are in flight and queued (2 signer threads, 2 s per
# signature, 5 handshakes: 2 signing, 3 queued) and a keep-alive connection is open:
# the gateway abandons the paused handshakes (their clients get an alert or a
# close), waits for the signatures already in the token, exits 0 with "stopped",
# and neither crashes nor leaks (under the ASan build LeakSanitizer would report in
# the log and make the exit status non-zero).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
. "$HERE/async_common.sh"
cg_setup
async_setup 2
async_cfg "$CFG" '{"signer": {"threads": 2, "queue": 8}}'
gw_start "$CFG" "$T/gw.log"

async_client "$T/keep.out" --request "$T/ping.req" --wait-close-ms 20000 &
cg_track_pid $!
for i in $(seq 1 50); do
	grep -q "response: HTTP/1.1 200" "$T/keep.out" 2>/dev/null && break
	sleep 0.1
done
cg_assert_contains "$T/keep.out" "response: HTTP/1.1 200"

async_ctl sign_delay_ms=2000
pids=()
for i in 1 2 3 4 5; do
	async_client "$T/s$i.out" --request "$T/ping.req" --timeout-ms 15000 &
	pids+=($!)
	cg_track_pid $!
done
async_wait_metric certgate_signer_inflight 2 10
async_wait_metric certgate_signer_queue_depth 3 10

kill -TERM "$GW_PID"
rc=0
wait "$GW_PID" || rc=$?
GW_PID=
for p in "${pids[@]}"; do
	wait "$p" || true
done
sed 's/^/  gw| /' "$T/gw.log" | grep -v " debug " | tail -15
[ "$rc" -eq 0 ] || cg_fail "gateway exited with status $rc after SIGTERM"
cg_assert_contains "$T/gw.log" "stopped"
cg_assert_contains "$T/gw.log" "waiting for 2 token signatures in flight"
cg_assert_not_contains "$T/gw.log" "AddressSanitizer"
cg_assert_not_contains "$T/gw.log" "LeakSanitizer"
cg_assert_not_contains "$T/gw.log" "runtime error"
for i in 1 2 3 4 5; do
	cg_assert_not_contains "$T/s$i.out" "handshake: ok"
done
cg_pass
