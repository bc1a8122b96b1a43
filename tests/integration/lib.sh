# lib.sh: generic helpers every integration test sources.
#
#   cg_setup                  temp dir $T (removed at exit; CG_KEEP=1 keeps it), EXIT
#                             trap killing tracked processes, CERTGATE_BIN/CG_SRC set,
#                             LSAN suppressions when tests/lsan.supp exists
#   cg_track_pid PID          kill PID at exit
#   cg_pki_init [ARGS...]     scripts/pki-init --dir $T/pki on free loopback ports; sets
#                             PKI, CG_LISTEN_PORT, CG_ADMIN_PORT; exports SOFTHSM2_CONF
#   cg_free_port              prints a free loopback TCP port
#   cg_fail MSG               print FAIL and exit 1
#   cg_assert_eq GOT WANT [WHAT]
#   cg_assert_contains FILE STRING       (fixed string)
#   cg_assert_not_contains FILE STRING
#   cg_expect_fail CODE CMD...  CMD must exit with CODE ("nonzero" for any failure)
#                             and print something on stderr; output in $T/out, $T/err
#   cg_snapshot FILE...       prints "sha256  path" of each (missing: "missing path")
#   cg_pass                   print PASS and exit 0

CG_PIDS=()
T=
CG_NAME=$(basename "${0:-test}" .sh)

cg_fail() {
	echo "FAIL: $CG_NAME: $*" >&2
	exit 1
}

cg_pass() {
	echo "PASS: $CG_NAME"
	exit 0
}

cg_track_pid() {
	CG_PIDS+=("$1")
}

_cg_cleanup() {
	local rc=$? pid
	trap - ERR
	if declare -F gw_cleanup >/dev/null; then
		gw_cleanup || true
	fi
	for pid in "${CG_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${CG_PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ -n "$T" ] && [ -d "$T" ]; then
		if [ "${CG_KEEP:-0}" = 1 ] || { [ "$rc" -ne 0 ] && [ "${CG_KEEP_ON_FAIL:-0}" = 1 ]; }; then
			echo "kept test directory $T" >&2
		else
			rm -rf -- "$T"
		fi
	fi
	exit "$rc"
}

cg_setup() {
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	CG_SRC=${CERTGATE_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
	export CERTGATE_SOURCE_DIR=$CG_SRC
	if [ -z "${CERTGATE_BIN:-}" ]; then
		if [ -n "${CERTGATE_BUILD_DIR:-}" ] && [ -x "$CERTGATE_BUILD_DIR/certgate" ]; then
			CERTGATE_BIN=$CERTGATE_BUILD_DIR/certgate
		elif [ -x "$CG_SRC/build/certgate" ]; then
			CERTGATE_BIN=$CG_SRC/build/certgate
		fi
	fi
	[ -n "${CERTGATE_BIN:-}" ] && [ -x "$CERTGATE_BIN" ] ||
		cg_fail "certgate binary not found: set CERTGATE_BIN (or run through ctest)"
	export CERTGATE_BIN
	# Tests never touch a developer's state folder by accident.
	unset CERTGATE_HOME CERTGATE_CRL_NOW
	if [ -f "$CG_SRC/tests/lsan.supp" ]; then
		export LSAN_OPTIONS="suppressions=$CG_SRC/tests/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
	fi
	CG_MODULE=${CERTGATE_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
	T=$(mktemp -d "${TMPDIR:-/tmp}/certgate-$CG_NAME.XXXXXX") || cg_fail "mktemp failed"
	trap _cg_cleanup EXIT
	set -E
	trap 'cg_fail "unexpected failure at line $LINENO: $BASH_COMMAND"' ERR
}

cg_free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

cg_pki_init() {
	CG_LISTEN_PORT=$(cg_free_port)
	CG_ADMIN_PORT=$(cg_free_port)
	PKI=$T/pki
	"$CG_SRC/scripts/pki-init" --dir "$PKI" --listen "127.0.0.1:$CG_LISTEN_PORT" \
	    --admin "127.0.0.1:$CG_ADMIN_PORT" "$@" >"$T/pki-init.out" 2>"$T/pki-init.err" || {
		cat "$T/pki-init.out" "$T/pki-init.err" >&2
		cg_fail "pki-init failed"
	}
	export SOFTHSM2_CONF=$PKI/token/softhsm2.conf
}

cg_assert_eq() {
	[ "$1" = "$2" ] || cg_fail "${3:-value}: got '$1', want '$2'"
}

cg_assert_contains() {
	[ -f "$1" ] || cg_fail "$1 does not exist"
	grep -qF -- "$2" "$1" || {
		sed 's/^/  | /' "$1" | head -40 >&2
		cg_fail "$1 does not contain '$2'"
	}
}

cg_assert_not_contains() {
	[ -f "$1" ] || cg_fail "$1 does not exist"
	if grep -qF -- "$2" "$1"; then
		sed 's/^/  | /' "$1" | head -40 >&2
		cg_fail "$1 contains '$2'"
	fi
}

cg_expect_fail() {
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	if [ "$rc" -eq 0 ]; then
		cg_fail "expected failure, got success: $*"
	fi
	if [ "$want" != nonzero ] && [ "$rc" -ne "$want" ]; then
		cat "$T/err" >&2
		cg_fail "expected exit $want, got $rc: $*"
	fi
	[ -s "$T/err" ] || cg_fail "no error message on stderr: $*"
}

cg_snapshot() {
	local f
	for f in "$@"; do
		if [ -e "$f" ]; then
			sha256sum -- "$f"
		else
			echo "missing $f"
		fi
	done
}
