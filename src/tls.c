/* TLS: the server SSL_CTX (mTLS against our CA and CRL, TLS >= 1.2, AEAD suites,
 * stable session-ticket keys) and loading of the server key. */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "p11.h"
#include "state.h"

#define TLS12_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS	"X25519:P-256:P-384"
#define TLS_VERIFY_DEPTH 4
#define TLS_NUM_TICKETS	2
#define TLS_CACHE_SIZE	10000

/* One set of ticket keys for the process lifetime, installed in every SSL_CTX, so a
 * reload (a new SSL_CTX) does not invalidate tickets already handed out. 80 bytes:
 * 16 key name, 32 HMAC secret, 32 AES key (OpenSSL's SSL_CTRL_SET_TLSEXT_TICKET_KEYS
 * layout). */
static unsigned char tls_ticket_keys[80];
static int tls_ticket_keys_ok;
static pthread_once_t tls_ticket_once = PTHREAD_ONCE_INIT;

static void
tls_ticket_init(void)
{
	if (RAND_priv_bytes(tls_ticket_keys, sizeof(tls_ticket_keys)) == 1)
		tls_ticket_keys_ok = 1;
}

void
tls_shutdown(void)
{
	OPENSSL_cleanse(tls_ticket_keys, sizeof(tls_ticket_keys));
}

int
tls_serial_hex(X509 *cert, char *buf, size_t len)
{
	const ASN1_INTEGER *ai;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	int rc = -1;

	if (len == 0)
		return -1;
	buf[0] = '\0';
	if ((ai = X509_get0_serialNumber(cert)) == NULL)
		return -1;
	if ((bn = ASN1_INTEGER_to_BN(ai, NULL)) == NULL)
		goto fail;
	if ((hex = BN_bn2hex(bn)) == NULL)
		goto fail;
	if (strlen(hex) >= len)
		goto fail;
	memcpy(buf, hex, strlen(hex) + 1);
	rc = 0;
fail:
	OPENSSL_free(hex);
	BN_free(bn);
	return rc;
}

int
tls_load_server_key(const struct config *cfg, EVP_PKEY **out)
{
	struct p11_defaults d;
	EVP_PKEY *pk = NULL;
	FILE *f;

	*out = NULL;
	if (cfg->tls.key == NULL) {
		log_err("%s: tls.key is not set", cfg->path ? cfg->path : "config");
		return -1;
	}
	if (p11_is_uri(cfg->tls.key)) {
		memset(&d, 0, sizeof(d));
		d.module = cfg->pkcs11.module;
		d.token = cfg->pkcs11.token;
		d.pin_file = cfg->pkcs11.pin_file;
		d.pin_env = cfg->pkcs11.pin_env;
		d.softhsm2_conf = cfg->pkcs11.softhsm2_conf;
		if (p11_load_private_key(&d, cfg->tls.key, cfg->tls.allow_extractable_key,
		    out) == -1) {
			log_err("cannot load the server key from the token (tls.key)");
			return -1;
		}
		return 0;
	}
	if ((f = fopen(cfg->tls.key, "r")) == NULL) {
		log_err("cannot open server key %s: %s", cfg->tls.key, strerror(errno));
		return -1;
	}
	pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (pk == NULL) {
		log_sslerr("cannot read server key %s (PEM private key expected)", cfg->tls.key);
		return -1;
	}
	log_warn("server key %s is a software key file (not in a token)", cfg->tls.key);
	*out = pk;
	return 0;
}

/* Resumption carries the peer certificate inside the ticket and skips chain
 * verification, so a ticket of a certificate revoked or expired since it was
 * issued must not resume: ignoring it forces a full handshake, where the CRL
 * check refuses the certificate with a proper alert. conn.c checks again after
 * every handshake (this also covers TLS 1.2 session-id resumption). */
static SSL_TICKET_RETURN
tls_ticket_decrypt_cb(SSL *s, SSL_SESSION *ss, const unsigned char *keyname,
    size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
	struct gw_state *st;
	X509 *peer;
	char serial[80];
	int bad = 0;

	switch (status) {
	case SSL_TICKET_SUCCESS:
	case SSL_TICKET_SUCCESS_RENEW:
		break;
	case SSL_TICKET_EMPTY:
	case SSL_TICKET_NO_DECRYPT:
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	case SSL_TICKET_NONE:
		return SSL_TICKET_RETURN_IGNORE;
	default:
		return SSL_TICKET_RETURN_ABORT;
	}
	peer = SSL_SESSION_get0_peer(ss);
	if (peer == NULL || tls_serial_hex(peer, serial, sizeof(serial)) == -1)
		bad = 1;
	else if (X509_cmp_current_time(X509_get0_notAfter(peer)) <= 0)
		bad = 1;
	else if ((st = state_get()) != NULL) {
		bad = state_is_revoked(st, serial);
		state_put(st);
	}
	if (bad) {
		log_debug("session ticket not resumed: certificate revoked or expired");
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	}
	return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE :
	    SSL_TICKET_RETURN_USE_RENEW;
}

/* Loads the first CRL from path. Returns NULL on failure (logged). */
static X509_CRL *
tls_read_crl(const char *path)
{
	X509_CRL *crl;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL) {
		log_err("cannot open CRL %s: %s", path, strerror(errno));
		return NULL;
	}
	crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
	fclose(f);
	if (crl == NULL)
		log_sslerr("cannot parse CRL %s (PEM X509 CRL expected)", path);
	return crl;
}

/* The CRL must be signed by one of the CAs in the store: a CRL from elsewhere
 * would make OpenSSL refuse every client ("unable to get CRL issuer"). */
static int
tls_crl_check_issuer(X509_STORE *store, X509_CRL *crl, const char *path)
{
	STACK_OF(X509_OBJECT) *objs;
	X509_OBJECT *o;
	X509 *ca;
	EVP_PKEY *pub;
	int i, found = 0;

	objs = X509_STORE_get0_objects(store);
	for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
		o = sk_X509_OBJECT_value(objs, i);
		if ((ca = X509_OBJECT_get0_X509(o)) == NULL)
			continue;
		if (X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(crl)) != 0)
			continue;
		found = 1;
		if ((pub = X509_get0_pubkey(ca)) != NULL && X509_CRL_verify(crl, pub) == 1)
			return 0;
	}
	ERR_clear_error();
	if (found)
		log_err("CRL %s: signature does not verify with the CA certificate", path);
	else
		log_err("CRL %s: issuer is not one of the CAs in tls.ca", path);
	return -1;
}

/* Logs the CRL's validity window: an expired CRL fails every verification. */
static void
tls_crl_report(X509_CRL *crl, const char *path)
{
	const ASN1_TIME *next, *last;
	char buf[64];
	BIO *b;
	int n;

	last = X509_CRL_get0_lastUpdate(crl);
	if (last != NULL && X509_cmp_current_time(last) > 0)
		log_err("CRL %s: thisUpdate is in the future (clock skew?); every client "
		    "will be refused until then", path);
	if ((next = X509_CRL_get0_nextUpdate(crl)) == NULL)
		return;
	buf[0] = '\0';
	if ((b = BIO_new(BIO_s_mem())) != NULL) {
		if (ASN1_TIME_print(b, next) == 1 &&
		    (n = BIO_read(b, buf, sizeof(buf) - 1)) > 0)
			buf[n] = '\0';
		BIO_free(b);
	}
	if (X509_cmp_current_time(next) <= 0)
		log_err("CRL %s expired at %s; every client will be refused; run "
		    "scripts/agent-list or certgate ca crl to re-sign", path, buf);
	else if (X509_cmp_time(next, &(time_t){ time(NULL) + 86400 }) <= 0)
		log_warn("CRL %s expires at %s (within 24 h); run certgate ca crl to re-sign",
		    path, buf);
}

/* Session id context: a hash of the CA bundle, so sessions made under another CA
 * never resume after tls.ca changes. */
static int
tls_set_sid_ctx(SSL_CTX *ctx, const char *ca_path)
{
	unsigned char md[EVP_MAX_MD_SIZE], buf[4096];
	unsigned int mdlen = 0;
	EVP_MD_CTX *m;
	size_t n;
	FILE *f;
	int rc = -1;

	if ((m = EVP_MD_CTX_new()) == NULL)
		return -1;
	if ((f = fopen(ca_path, "r")) == NULL) {
		log_err("cannot open CA bundle %s: %s", ca_path, strerror(errno));
		goto fail;
	}
	if (EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(m, "certgate", 8) != 1)
		goto fail;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		if (EVP_DigestUpdate(m, buf, n) != 1)
			goto fail;
	if (EVP_DigestFinal_ex(m, md, &mdlen) != 1)
		goto fail;
	if (mdlen > SSL_MAX_SID_CTX_LENGTH)
		mdlen = SSL_MAX_SID_CTX_LENGTH;
	if (SSL_CTX_set_session_id_context(ctx, md, mdlen) != 1)
		goto fail;
	rc = 0;
fail:
	if (rc == -1)
		log_sslerr("cannot set the session id context");
	if (f != NULL)
		fclose(f);
	EVP_MD_CTX_free(m);
	return rc;
}

/* 1 when the bundle holds a certificate that is not self-issued (an intermediate
 * CA), whose revocation must be checked too. */
static int
tls_store_has_intermediate(X509_STORE *store)
{
	STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
	X509 *x;
	int i;

	for (i = 0; i < sk_X509_OBJECT_num(objs); i++) {
		if ((x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i))) == NULL)
			continue;
		if (X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) != 0)
			return 1;
	}
	return 0;
}

/* Builds the verification store: the CA bundle and, when checking, the CRL. */
static X509_STORE *
tls_store_new(const struct config *cfg, X509_CRL **crl_out)
{
	X509_STORE *store;
	X509_CRL *crl = NULL;
	unsigned long flags;

	if ((store = X509_STORE_new()) == NULL) {
		log_sslerr("X509_STORE_new");
		return NULL;
	}
	if (X509_STORE_load_file(store, cfg->tls.ca) != 1) {
		log_sslerr("cannot load CA bundle %s (tls.ca)", cfg->tls.ca);
		goto fail;
	}
	if (sk_X509_OBJECT_num(X509_STORE_get0_objects(store)) == 0) {
		log_err("CA bundle %s (tls.ca) holds no certificate", cfg->tls.ca);
		goto fail;
	}
	if (cfg->tls.crl_check) {
		if (cfg->tls.crl == NULL) {
			log_err("tls.crl_check is on but tls.crl is not set");
			goto fail;
		}
		if ((crl = tls_read_crl(cfg->tls.crl)) == NULL)
			goto fail;
		if (tls_crl_check_issuer(store, crl, cfg->tls.crl) == -1)
			goto fail;
		if (X509_STORE_add_crl(store, crl) != 1) {
			log_sslerr("cannot add CRL %s", cfg->tls.crl);
			goto fail;
		}
		/* Leaf-only suffices while the CA issues agents directly; a bundle with
		 * intermediates needs every level checked. */
		flags = X509_V_FLAG_CRL_CHECK;
		if (tls_store_has_intermediate(store))
			flags |= X509_V_FLAG_CRL_CHECK_ALL;
		X509_STORE_set_flags(store, flags);
		tls_crl_report(crl, cfg->tls.crl);
	}
	X509_STORE_set_depth(store, TLS_VERIFY_DEPTH);
	if (crl_out != NULL)
		*crl_out = crl;
	else
		X509_CRL_free(crl);
	return store;
fail:
	X509_CRL_free(crl);
	X509_STORE_free(store);
	return NULL;
}

static int
tls_ctx_protocol(SSL_CTX *ctx, const struct config *cfg)
{
	int minv = cfg->tls.min_version ? cfg->tls.min_version : TLS1_2_VERSION;

	if (minv < TLS1_2_VERSION)
		minv = TLS1_2_VERSION;
	if (SSL_CTX_set_min_proto_version(ctx, minv) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
		log_sslerr("cannot set TLS protocol versions");
		return -1;
	}
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
		log_sslerr("cannot set TLS 1.2 ciphers");
		return -1;
	}
	if (SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1) {
		log_sslerr("cannot set groups %s", TLS_GROUPS);
		return -1;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE
#ifdef SSL_OP_NO_CLIENT_RENEGOTIATION
	    | SSL_OP_NO_CLIENT_RENEGOTIATION
#endif
	    );
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return 0;
}

static int
tls_ctx_identity(SSL_CTX *ctx, const struct config *cfg, EVP_PKEY *key)
{
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls.cert) != 1) {
		log_sslerr("cannot load server certificate chain %s (tls.cert)", cfg->tls.cert);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
		log_sslerr("server certificate %s does not match the server key (tls.key) "
		    "or the key is unusable", cfg->tls.cert);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		log_sslerr("server certificate %s does not match the server key (tls.key)",
		    cfg->tls.cert);
		return -1;
	}
	return 0;
}

static int
tls_ctx_verify(SSL_CTX *ctx, const struct config *cfg, X509_CRL **crl_out)
{
	STACK_OF(X509_NAME) *names;
	X509_STORE *store;

	if ((store = tls_store_new(cfg, crl_out)) == NULL)
		return -1;
	SSL_CTX_set_cert_store(ctx, store);	/* ctx owns store now */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
	if ((names = SSL_load_client_CA_file(cfg->tls.ca)) == NULL) {
		log_sslerr("cannot read CA names from %s", cfg->tls.ca);
		return -1;
	}
	SSL_CTX_set_client_CA_list(ctx, names);
	return tls_set_sid_ctx(ctx, cfg->tls.ca);
}

static int
tls_ctx_sessions(SSL_CTX *ctx, const struct config *cfg)
{
	if (!cfg->tls.session_tickets) {
		/* No resumption at all: every connection re-verifies its certificate. */
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 0);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		return 0;
	}
	pthread_once(&tls_ticket_once, tls_ticket_init);
	if (!tls_ticket_keys_ok) {
		log_sslerr("cannot generate session ticket keys");
		return -1;
	}
	if (SSL_CTX_set_tlsext_ticket_keys(ctx, tls_ticket_keys,
	    sizeof(tls_ticket_keys)) != 1) {
		log_sslerr("cannot install session ticket keys");
		return -1;
	}
	SSL_CTX_set_num_tickets(ctx, TLS_NUM_TICKETS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(ctx, TLS_CACHE_SIZE);
	if (SSL_CTX_set_session_ticket_cb(ctx, NULL, tls_ticket_decrypt_cb, NULL) != 1) {
		log_sslerr("cannot install the session ticket callback");
		return -1;
	}
	return 0;
}

SSL_CTX *
tls_ctx_new(const struct config *cfg, EVP_PKEY *key, X509_CRL **crl_out)
{
	X509_CRL *crl = NULL;
	SSL_CTX *ctx;

	if (crl_out != NULL)
		*crl_out = NULL;
	if (key == NULL) {
		log_err("no server key");
		return NULL;
	}
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		log_sslerr("SSL_CTX_new");
		return NULL;
	}
	if (tls_ctx_protocol(ctx, cfg) == -1 || tls_ctx_identity(ctx, cfg, key) == -1 ||
	    tls_ctx_verify(ctx, cfg, &crl) == -1 || tls_ctx_sessions(ctx, cfg) == -1)
		goto fail;
	if (crl_out != NULL)
		*crl_out = crl;
	else
		X509_CRL_free(crl);
	return ctx;
fail:
	X509_CRL_free(crl);
	SSL_CTX_free(ctx);
	return NULL;
}
