# shellcheck shell=bash
# agent.sh: helpers for the `certgate agent` tests (tests/integration/t_agent_*.sh).
# Source after lib.sh, gw.sh and e2e.sh, then call cg_setup.
#
#   agent_client SCENARIO OUT ARGS...  runs tests/js/agent_client.mjs (the SDK's
#                             StdioClientTransport) with ARGS; JSON lines to OUT,
#                             its stderr to OUT.err; returns the client's status
#   agent_stdio_args URL DIR [EXTRA...]  prints agent_client arguments that spawn
#                             `certgate agent stdio --url URL --dir DIR EXTRA...`
#   agent_listen_start PORT URL DIR [EXTRA...]  starts `certgate agent listen` on
#                             127.0.0.1:PORT, waits until it accepts; log in
#                             $T/listen-PORT.log; sets AGENT_LISTEN_PID
#   agent_soft_gateway UPSTREAM_URL  a software PKI in $SOFT (gw_soft_pki) and a
#                             certgate gateway on it (the EST tests need a CA whose
#                             key `openssl ca` can use); sets SOFT, GW_URL
#   agent_est_start [LIFETIME_S]  starts tests/tools/est_standin.py on $SOFT's CA;
#                             sets EST_PORT, EST_URL; tokens in $EST_TOKENS, request
#                             log in $EST_LOG
#   agent_est_token ID        prints a new one-time enrollment token for ID (the
#                             cg1.<CA fingerprint>.<secret> format) and adds ID to
#                             $SOFT's identity map
#   agent_est_count OP [STATUS]  prints how many OP requests (with STATUS) the
#                             stand-in logged

agent_client() {
	local scenario=$1 out=$2
	shift 2
	timeout -k 5 "${AGENT_CLIENT_TIMEOUT:-120}" node "$CG_SRC/tests/js/agent_client.mjs" \
	    --scenario "$scenario" "$@" >"$out" 2>"$out.err"
}

agent_stdio_args() {
	local url=$1 dir=$2 a
	shift 2
	printf '%s\n' --command "$CERTGATE_BIN" --arg agent --arg stdio --arg --url \
	    --arg "$url" --arg --dir --arg "$dir"
	for a in "$@"; do
		printf '%s\n' --arg "$a"
	done
}

agent_listen_start() {
	local port=$1 url=$2 dir=$3 i
	shift 3
	"$CERTGATE_BIN" agent listen --listen "127.0.0.1:$port" --url "$url" --dir "$dir" \
	    "$@" 2>>"$T/listen-$port.log" &
	AGENT_LISTEN_PID=$!
	cg_track_pid "$AGENT_LISTEN_PID"
	for i in $(seq 1 100); do
		kill -0 "$AGENT_LISTEN_PID" 2>/dev/null || {
			cat "$T/listen-$port.log" >&2
			cg_fail "certgate agent listen exited during start-up"
		}
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	cg_fail "certgate agent listen did not accept on 127.0.0.1:$port within 10 s"
}

agent_soft_gateway() {
	local port
	port=$(cg_free_port)
	SOFT=$T/soft
	gw_soft_pki "$SOFT" "$port" "$1" || cg_fail "software PKI set-up failed"
	GW_URL=https://127.0.0.1:$port/mcp
	gw_start "$SOFT/certgate.json" "$T/gw.log"
}

agent_est_start() {
	local lifetime=${1:-86400} i
	EST_PORT=$(cg_free_port)
	EST_URL=https://127.0.0.1:$EST_PORT
	EST_TOKENS=$T/est-tokens
	EST_LOG=$T/est.jsonl
	: >"$EST_TOKENS"
	: >"$EST_LOG"
	python3 "$CG_SRC/tests/tools/est_standin.py" --port "$EST_PORT" --dir "$SOFT" \
	    --tokens "$EST_TOKENS" --log "$EST_LOG" --lifetime-s "$lifetime" \
	    >"$T/est.out" 2>"$T/est.err" &
	cg_track_pid $!
	for i in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$EST_PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	cat "$T/est.err" >&2
	cg_fail "EST stand-in did not start"
}

agent_est_token() {
	local id=$1 fp secret
	fp=$(openssl x509 -in "$SOFT/ca/ca.pem" -outform DER | sha256sum | cut -c1-64)
	secret=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
	printf '%s cg1.%s.%s\n' "$id" "$fp" "$secret" >>"$EST_TOKENS"
	_gw_soft_map_add "$SOFT" "$id"
	printf 'cg1.%s.%s\n' "$fp" "$secret"
}

agent_est_count() {
	if [ -n "${2:-}" ]; then
		jq -s "[.[] | select(.op == \"$1\" and .status == $2)] | length" "$EST_LOG"
	else
		jq -s "[.[] | select(.op == \"$1\")] | length" "$EST_LOG"
	fi
}
