# async_common.sh: shared set-up for the t_async_*.sh tests (token signatures on the
# signer pool while the handshake waits in an OpenSSL async job). Source after
# lib.sh and gw.sh, then call cg_setup.
#
#   async_setup [WORKERS]   token PKI (pki-init), upstream echo, agent "a", and
#                           $CFG = $PKI/certgate.json with pkcs11.module pointing at
#                           libp11fault.so (P11FAULT_MODULE = the real SoftHSM),
#                           control file $P11FAULT_CONTROL (empty: pass-through) and
#                           stats file $P11FAULT_STATS
#   async_cfg FILE JSON     deep-merges a JSON object into config FILE
#   async_ctl LINE...       rewrites the p11fault control file and waits until the
#                           module has re-read it (it caches it for 100 ms)
#   async_metric NAME       value of the /metrics line NAME (with labels), 0 if absent
#   async_client OUT ARGS   tlsclient as agent "a" writing to OUT; never trips ERR
#   async_stat KEY          a value from the p11fault stats file (signs, failed,
#                           max_concurrent), 0 when absent

async_setup() {
	local workers=${1:-2}
	P11FAULT_SO=${CERTGATE_TOOLS_DIR:-${CERTGATE_BUILD_DIR:-}/tests}/libp11fault.so
	[ -f "$P11FAULT_SO" ] || cg_fail "libp11fault.so not found at $P11FAULT_SO"
	UP_PORT=$(cg_free_port)
	cg_pki_init --upstream "http://127.0.0.1:$UP_PORT/mcp"
	gw_upstream_start "$UP_PORT"
	"$CG_SRC/scripts/agent-issue" --dir "$PKI" --agent a --role admin >/dev/null \
	    2>"$T/issue.err" || { cat "$T/issue.err" >&2; cg_fail "agent-issue failed"; }
	export P11FAULT_MODULE=$CG_MODULE
	export P11FAULT_CONTROL=$T/p11fault.ctl
	export P11FAULT_STATS=$T/p11fault.stats
	: >"$P11FAULT_CONTROL"
	CFG=$PKI/certgate.json
	CA=$PKI/ca/ca.pem
	AGENT=$PKI/agents/a
	async_cfg "$CFG" "{\"workers\": $workers, \"pkcs11\": {\"module\": \"$P11FAULT_SO\"},
	    \"limits\": {\"grace_ms\": 3000}}"
	gw_rpc_request "$T/ping.req" ping
}

async_cfg() {
	python3 - "$1" "$2" <<'EOF'
import json, sys
path, patch = sys.argv[1], json.loads(sys.argv[2])
def merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            merge(a[k], v)
        else:
            a[k] = v
c = json.load(open(path))
merge(c, patch)
json.dump(c, open(path + ".tmp", "w"), indent=1)
EOF
	mv "$1.tmp" "$1"
}

async_ctl() {
	printf '%s\n' "$@" >"$P11FAULT_CONTROL"
	sleep 0.3
}

async_metric() {
	curl -s --max-time 5 "http://127.0.0.1:$CG_ADMIN_PORT/metrics" |
	    awk -v n="$1" '$1 == n { print $2; found = 1 } END { if (!found) print 0 }'
}

async_client() {
	local out=$1
	shift
	gw_client --ca "$CA" --cert "$AGENT/cert.pem" --key "$AGENT/key.pem" "$@" \
	    >"$out" 2>&1 || true
}

async_stat() {
	if [ -f "$P11FAULT_STATS" ]; then
		tr ' ' '\n' <"$P11FAULT_STATS" | awk -F= -v k="$1" '$1 == k { print $2; f = 1 }
		    END { if (!f) print 0 }'
	else
		echo 0
	fi
}

# async_wait_metric NAME VALUE [SECS]: polls /metrics until NAME >= VALUE.
async_wait_metric() {
	local name=$1 want=$2 secs=${3:-10} i v
	for i in $(seq 1 $((secs * 10))); do
		v=$(async_metric "$name")
		[ "${v%.*}" -ge "$want" ] 2>/dev/null && return 0
		sleep 0.1
	done
	cg_fail "$name did not reach $want within $secs s (last $v)"
}
