# ca.sh: helpers for tests of the CA service (`certgate ca serve`), sourced after
# lib.sh and cg_pki_init. catool (tests/tools/catool.c) runs the gateway's own code
# (est.c, caclient.c, caproc.c) against the service.
#
#   ca_serve_start [CONFIG]     start `certgate ca serve` (log $T/ca-serve.log), wait
#                               until it answers a ping; sets CA_PID, CA_SOCK
#   ca_serve_stop               SIGTERM, wait
#   ca_token AGENT [ARGS...]    scripts/agent-token; sets TOKEN
#   ca_csr FILE TYPE            base64 DER CSR in FILE, key in FILE.key; TYPE is
#                               p256, p384, p521, k256, rsa1024, rsa2048, rsa3072
#   ca_basic FILE AGENT TOKEN   writes "Basic base64(AGENT:TOKEN)" to FILE (0600)
#   ca_est OUT ARGS...          catool est $CA_SOCK $PKI/ca/ca.pem ARGS --out OUT.body,
#                               status lines in OUT; sets EST_STATUS
#   ca_enroll AGENT TOKEN NAME  simpleenroll with a new P-256 key: $T/NAME.pem (cert),
#                               $T/NAME.key; fails the test unless 200

CATOOL=${CERTGATE_TOOLS_DIR:-$(dirname "$CERTGATE_BIN")/tests}/catool

ca_serve_start() {
	local cfg=${1:-$PKI/certgate.json} i
	[ -x "$CATOOL" ] || cg_fail "catool not found at $CATOOL"
	CA_SOCK=$PKI/ca/ca.sock
	"$CERTGATE_BIN" ca serve -c "$cfg" >>"$T/ca-serve.log" 2>&1 &
	CA_PID=$!
	cg_track_pid "$CA_PID"
	for i in $(seq 1 100); do
		if "$CATOOL" ping "$CA_SOCK" 2>/dev/null | grep -q '^ok '; then
			return 0
		fi
		kill -0 "$CA_PID" 2>/dev/null || { cat "$T/ca-serve.log" >&2; cg_fail "the CA service exited"; }
		sleep 0.1
	done
	cat "$T/ca-serve.log" >&2
	cg_fail "the CA service did not answer within 10 s"
}

ca_serve_stop() {
	[ -n "${CA_PID:-}" ] || return 0
	kill -TERM "$CA_PID" 2>/dev/null || true
	wait "$CA_PID" 2>/dev/null || true
	CA_PID=
}

ca_token() {
	local agent=$1
	shift
	TOKEN=$("$CG_SRC/scripts/agent-token" --dir "$PKI" --agent "$agent" "$@" 2>"$T/token.err" | tail -n1) ||
		{ cat "$T/token.err" >&2; cg_fail "agent-token $agent failed"; }
	[[ "$TOKEN" =~ ^cg1\.[0-9a-f]{64}\.[A-Za-z0-9_-]{43}$ ]] || cg_fail "agent-token printed '$TOKEN'"
}

ca_csr() {
	local out=$1 type=$2 args
	case "$type" in
	p256) args=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
	p384) args=(-newkey ec -pkeyopt ec_paramgen_curve:P-384) ;;
	p521) args=(-newkey ec -pkeyopt ec_paramgen_curve:P-521) ;;
	k256) args=(-newkey ec -pkeyopt ec_paramgen_curve:secp256k1) ;;
	rsa*) args=(-newkey "rsa:${type#rsa}") ;;
	*) cg_fail "ca_csr: unknown key type $type" ;;
	esac
	openssl req -new "${args[@]}" -nodes -keyout "$out.key" -subj "/CN=ignored/O=Ignored" \
	    -outform DER -out "$out.der" 2>/dev/null || cg_fail "openssl req $type failed"
	base64 <"$out.der" >"$out"
}

ca_basic() {
	(umask 077 && printf 'Basic %s' "$(printf '%s:%s' "$2" "$3" | base64 -w0)" >"$1")
}

ca_est() {
	local out=$1
	shift
	"$CATOOL" est "$CA_SOCK" "$PKI/ca/ca.pem" "$@" --out "$out.body" >"$out" 2>"$out.err" ||
		{ cat "$out.err" >&2; cg_fail "catool est failed: $*"; }
	EST_STATUS=$(sed -n 's/^status //p' "$out" | head -n1)
}

ca_enroll() {
	local agent=$1 token=$2 name=$3
	ca_csr "$T/$name.csr" p256
	mv "$T/$name.csr.key" "$T/$name.key"
	ca_basic "$T/$name.auth" "$agent" "$token"
	ca_est "$T/$name.est" POST /.well-known/est/simpleenroll --ctype application/pkcs10 \
	    --auth-file "$T/$name.auth" --body "$T/$name.csr" --peer 127.0.0.9
	[ "$EST_STATUS" = 200 ] || { cat "$T/$name.est" "$T/$name.est.body" >&2; cg_fail "enrolling $agent: status $EST_STATUS"; }
	base64 -d <"$T/$name.est.body" | openssl pkcs7 -inform DER -print_certs >"$T/$name.pem" 2>/dev/null ||
		cg_fail "the simpleenroll answer for $agent is not base64 PKCS#7"
}
