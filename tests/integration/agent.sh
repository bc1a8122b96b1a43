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
#   agent_gateway UPSTREAM_URL [PKI-INIT ARGS...]  the token PKI of scripts/pki-init
#                             with an enrollment listener (--enroll) and a certgate
#                             gateway on it, which also runs the CA service; sets
#                             GW_URL (the MCP URL), MTLS_URL (the mTLS listener's
#                             origin), EST_PORT, EST_URL (the enrollment listener's
#                             origin), AUDIT, CA_AUDIT, GW_SOFTHSM2_CONF
#   agent_token ID [ARGS...]  prints a new one-time enrollment token for ID from
#                             scripts/agent-token (ARGS: --role, --lifetime...; the
#                             default --role member)
#   agent_est_count OP [STATUS]  how many EST requests OP (cacerts, simpleenroll,
#                             simplereenroll; with STATUS) the gateway's audit log holds
#                             (both listeners)
#   agent_ca_count WHAT [AGENT]  how many WHAT lines (enroll, renew, token,
#                             refused...) the CA's ca-audit.jsonl holds (for AGENT)

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

agent_gateway() {
	local up=$1
	shift
	EST_PORT=$(cg_free_port)
	cg_pki_init --upstream "$up" --enroll "127.0.0.1:$EST_PORT" "$@"
	GW_SOFTHSM2_CONF=$SOFTHSM2_CONF
	gw_start "$PKI/certgate.json" "$T/gw.log"
	gw_wait_log "enrollment \(EST, OCSP\) on https://127.0.0.1:$EST_PORT" 10 ||
		cg_fail "the gateway did not start its enrollment listener"
	EST_URL=https://127.0.0.1:$EST_PORT
	MTLS_URL=https://127.0.0.1:$CG_LISTEN_PORT
	GW_URL=$MTLS_URL/mcp
	AUDIT=$PKI/audit.jsonl
	CA_AUDIT=$PKI/ca-audit.jsonl
}

agent_token() {
	local id=$1 out
	shift
	[ $# -gt 0 ] || set -- --role member
	out=$(SOFTHSM2_CONF=$GW_SOFTHSM2_CONF "$CG_SRC/scripts/agent-token" --dir "$PKI" \
	    --agent "$id" "$@" 2>"$T/agent-token.err") || {
		cat "$T/agent-token.err" >&2; cg_fail "agent-token --agent $id failed"; }
	out=$(tail -n1 <<<"$out")
	case $out in cg1.*) printf '%s\n' "$out" ;;
	*) cat "$T/agent-token.err" >&2; cg_fail "agent-token printed no token" ;; esac
}

agent_est_count() {
	local m sel
	case $1 in cacerts) m="GET /.well-known/est/cacerts" ;;
	*) m="POST /.well-known/est/$1" ;; esac
	# Both listeners log "METHOD PATH" as the method.
	sel=".method == \"$m\""
	[ -z "${2:-}" ] || sel="$sel and .status == $2"
	[ -f "$AUDIT" ] || { echo 0; return 0; }
	jq -s "[.[] | select($sel)] | length" "$AUDIT"
}

agent_ca_count() {
	if [ -n "${2:-}" ]; then
		jq -s "[.[] | select(.what == \"$1\" and .agent == \"$2\")] | length" "$CA_AUDIT"
	else
		jq -s "[.[] | select(.what == \"$1\")] | length" "$CA_AUDIT"
	fi
}
