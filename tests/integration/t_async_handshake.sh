#!/bin/bash
# Asynchronous token signatures, happy paths (signer.async true, the default),
# through libp11fault.so wrapping SoftHSM:
#  - EC P-256 server key: TLS 1.3 and TLS 1.2 handshakes complete and every
#    signature went through the signer pool (certgate_signer_signs_total ok);
#  - signatures really run in parallel: with sign_delay_ms=500 and
#    sign_concurrency=8, 16 simultaneous handshakes all succeed and the module saw
#    8 C_Sign calls at once (8 signer threads, one PKCS#11 session each);
#  - RSA-2048 server key (generated in the token, certificate from `certgate ca
#    server`): TLS 1.3 (RSA-PSS), TLS 1.2 with RSA-PSS and TLS 1.2 with PKCS#1 v1.5
#    signatures all complete through the pool.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/gw.sh"
. "$HERE/async_common.sh"
cg_setup
async_setup 2
gw_start "$CFG" "$T/gw.log"
gw_log_contains "signer pool: 8 threads" || cg_fail "signer pool not started"

# --- EC key, both TLS versions -----------------------------------------------------
for v in 1.3 1.2; do
	async_client "$T/ec$v.out" "--tls$v" --request "$T/ping.req"
	cg_assert_contains "$T/ec$v.out" "protocol: TLSv$v"
	cg_assert_contains "$T/ec$v.out" "response: HTTP/1.1 200"
done
ok=$(async_metric 'certgate_signer_signs_total{result="ok"}')
cg_assert_eq "$ok" 2 "signatures made by the signer pool (EC)"

# --- parallel signatures -----------------------------------------------------------------
async_ctl sign_delay_ms=500 sign_concurrency=8
pids=()
for i in $(seq 1 16); do
	async_client "$T/par$i.out" --request "$T/ping.req" --timeout-ms 8000 &
	pids+=($!)
done
for p in "${pids[@]}"; do
	wait "$p"
done
for i in $(seq 1 16); do
	cg_assert_contains "$T/par$i.out" "response: HTTP/1.1 200"
done
maxc=$(async_stat max_concurrent)
echo "16 handshakes, 500 ms per signature: at most $maxc signatures at once in the token"
cg_assert_eq "$maxc" 8 "C_Sign calls running at once"
async_ctl ""

# --- RSA key -----------------------------------------------------------------------------
gw_stop
PIN=$(cat "$PKI/token/user.pin")
pkcs11-tool --module "$CG_MODULE" --token-label certgate --login --pin "$PIN" \
    --keypairgen --key-type rsa:2048 --label certgate-server-rsa --id 525341 --sensitive \
    >"$T/keygen.out" 2>&1 || { cat "$T/keygen.out" >&2; cg_fail "RSA key generation"; }
RSA_CFG=$PKI/certgate-rsa.json
cp "$CFG" "$RSA_CFG"
async_cfg "$RSA_CFG" '{"tls": {"key": "pkcs11:token=certgate;object=certgate-server-rsa;type=private",
    "cert": "server/rsa-cert.pem"}}'
"$CERTGATE_BIN" ca server -c "$RSA_CFG" >"$T/caserver.out" 2>&1 ||
    { cat "$T/caserver.out" >&2; cg_fail "certgate ca server for the RSA key"; }
openssl x509 -in "$PKI/server/rsa-cert.pem" -noout -text | grep -q "rsaEncryption" ||
    cg_fail "server certificate is not for the RSA key"
gw_start "$RSA_CFG" "$T/gw-rsa.log"
for v in 1.3 1.2; do
	async_client "$T/rsa$v.out" "--tls$v" --request "$T/ping.req"
	cg_assert_contains "$T/rsa$v.out" "protocol: TLSv$v"
	cg_assert_contains "$T/rsa$v.out" "response: HTTP/1.1 200"
done
for sa in RSA-PSS+SHA256:RSA-PSS RSA+SHA256:RSA; do
	# s_client prints "Peer signature type: RSA-PSS" or "RSA" (PKCS#1 v1.5).
	echo | timeout 10 openssl s_client -connect "127.0.0.1:$GW_PORT" -tls1_2 \
	    -sigalgs "${sa%%:*}" -CAfile "$CA" -cert "$AGENT/cert.pem" -key "$AGENT/key.pem" \
	    -servername localhost >"$T/sclient.out" 2>&1 || true
	grep -qxF "Peer signature type: ${sa##*:}" "$T/sclient.out" ||
	    { cat "$T/sclient.out" >&2; cg_fail "TLS 1.2 with ${sa%%:*}: no ${sa##*:} signature"; }
	cg_assert_contains "$T/sclient.out" "Verify return code: 0 (ok)"
done
ok=$(async_metric 'certgate_signer_signs_total{result="ok"}')
cg_assert_eq "$ok" 4 "signatures made by the signer pool (RSA)"
cg_assert_eq "$(async_metric 'certgate_signer_signs_total{result="error"}')" 0 "sign errors"
gw_stop
cg_pass
