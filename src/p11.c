/* PKCS#11 layer: libp11 for EVP_PKEY objects and the raw PKCS#11 API for what
 * libp11 does not expose (attribute reads, key generation, health checks). The only
 * file that includes libp11 or pkcs11 headers; what a key reference and a PIN source
 * mean, which needs neither, is p11_uri.c and p11_pin.c.
 *
 * Why one file of this size: modules, tokens, sessions, the signing methods and the
 * health monitor share one lock and one set of token records (struct p11_token);
 * split apart, each part would need the others' internals, and the rule that only
 * one file sees the PKCS#11 API would no longer hold. */

/* EVP_PKEY_meth_add0 is deprecated in OpenSSL 3 but is the only way to make
 * libp11's direct API sign RSA-PSS with CKM_RSA_PKCS_PSS (see the README). */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "p11.h"
#include "log.h"
#include "signer.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <libp11.h>
#include <p11-kit/pkcs11.h>

/* One loaded module: libp11's context plus our own handle on the same module for
 * raw calls (dlopen returns the same instance, so both share one C_Initialize). */
struct p11_module {
	char			*path;
	PKCS11_CTX		*ctx;
	PKCS11_SLOT		*slots;
	unsigned int		 nslots;
	void			*dl;
	CK_FUNCTION_LIST_PTR	 fl;
	struct p11_module	*next;
};

/* One token on one module, logged in, with our own raw session. The PIN is not
 * kept: p11_health re-reads it from its file or environment variable. */
struct p11_token {
	struct p11_module	*mod;
	char			*label;
	PKCS11_SLOT		*slot;
	CK_SLOT_ID		 slot_id;
	CK_SESSION_HANDLE	 sess;
	int			 has_sess;
	int			 need_login;
	char			*pin_file;
	char			*pin_env;
	CK_RV			 login_rv;	/* last C_Login result */
	int			 pin_stop;	/* bad PIN seen: no login until reset */
	int			 backoff_s;	/* next wait after a failed login */
	time_t			 retry_at;	/* no login before this */
	struct p11_token	*next;
};

static pthread_mutex_t p11_lock = PTHREAD_MUTEX_INITIALIZER;
static struct p11_module *p11_modules;
static struct p11_token *p11_tokens;
static pthread_once_t p11_meth_once = PTHREAD_ONCE_INIT;

/* ------------------------------------------------------------------------- */
/* Return codes */

static const struct {
	unsigned long	 rv;
	const char	*name;
} p11_rv_names[] = {
	{ CKR_OK, "CKR_OK" },
	{ CKR_CANCEL, "CKR_CANCEL" },
	{ CKR_HOST_MEMORY, "CKR_HOST_MEMORY" },
	{ CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID" },
	{ CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR" },
	{ CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED" },
	{ CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD" },
	{ CKR_NO_EVENT, "CKR_NO_EVENT" },
	{ CKR_NEED_TO_CREATE_THREADS, "CKR_NEED_TO_CREATE_THREADS" },
	{ CKR_CANT_LOCK, "CKR_CANT_LOCK" },
	{ CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY" },
	{ CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE" },
	{ CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID" },
	{ CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID" },
	{ CKR_ACTION_PROHIBITED, "CKR_ACTION_PROHIBITED" },
	{ CKR_DATA_INVALID, "CKR_DATA_INVALID" },
	{ CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE" },
	{ CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR" },
	{ CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY" },
	{ CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED" },
	{ CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID" },
	{ CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE" },
	{ CKR_FUNCTION_CANCELED, "CKR_FUNCTION_CANCELED" },
	{ CKR_FUNCTION_NOT_PARALLEL, "CKR_FUNCTION_NOT_PARALLEL" },
	{ CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED" },
	{ CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID" },
	{ CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE" },
	{ CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT" },
	{ CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED" },
	{ CKR_KEY_NOT_WRAPPABLE, "CKR_KEY_NOT_WRAPPABLE" },
	{ CKR_KEY_UNEXTRACTABLE, "CKR_KEY_UNEXTRACTABLE" },
	{ CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID" },
	{ CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID" },
	{ CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID" },
	{ CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE" },
	{ CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED" },
	{ CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT" },
	{ CKR_PIN_INVALID, "CKR_PIN_INVALID" },
	{ CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE" },
	{ CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED" },
	{ CKR_PIN_LOCKED, "CKR_PIN_LOCKED" },
	{ CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED" },
	{ CKR_SESSION_COUNT, "CKR_SESSION_COUNT" },
	{ CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID" },
	{ CKR_SESSION_PARALLEL_NOT_SUPPORTED, "CKR_SESSION_PARALLEL_NOT_SUPPORTED" },
	{ CKR_SESSION_READ_ONLY, "CKR_SESSION_READ_ONLY" },
	{ CKR_SESSION_EXISTS, "CKR_SESSION_EXISTS" },
	{ CKR_SESSION_READ_ONLY_EXISTS, "CKR_SESSION_READ_ONLY_EXISTS" },
	{ CKR_SESSION_READ_WRITE_SO_EXISTS, "CKR_SESSION_READ_WRITE_SO_EXISTS" },
	{ CKR_SIGNATURE_INVALID, "CKR_SIGNATURE_INVALID" },
	{ CKR_SIGNATURE_LEN_RANGE, "CKR_SIGNATURE_LEN_RANGE" },
	{ CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE" },
	{ CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT" },
	{ CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT" },
	{ CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED" },
	{ CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED" },
	{ CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN" },
	{ CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN" },
	{ CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED" },
	{ CKR_USER_TYPE_INVALID, "CKR_USER_TYPE_INVALID" },
	{ CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "CKR_USER_ANOTHER_ALREADY_LOGGED_IN" },
	{ CKR_USER_TOO_MANY_TYPES, "CKR_USER_TOO_MANY_TYPES" },
	{ CKR_DOMAIN_PARAMS_INVALID, "CKR_DOMAIN_PARAMS_INVALID" },
	{ CKR_CURVE_NOT_SUPPORTED, "CKR_CURVE_NOT_SUPPORTED" },
	{ CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL" },
	{ CKR_RANDOM_NO_RNG, "CKR_RANDOM_NO_RNG" },
	{ CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED" },
	{ CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED" },
	{ CKR_MUTEX_BAD, "CKR_MUTEX_BAD" },
	{ CKR_MUTEX_NOT_LOCKED, "CKR_MUTEX_NOT_LOCKED" },
	{ CKR_FUNCTION_REJECTED, "CKR_FUNCTION_REJECTED" },
};

static __thread char p11_rv_buf[32];

const char *
p11_rv_str(unsigned long rv)
{
	size_t i;

	for (i = 0; i < sizeof(p11_rv_names) / sizeof(p11_rv_names[0]); i++)
		if (p11_rv_names[i].rv == rv)
			return p11_rv_names[i].name;
	snprintf(p11_rv_buf, sizeof(p11_rv_buf), "CKR_0x%lx", rv);
	return p11_rv_buf;
}

/* libp11 reports PKCS#11 failures as OpenSSL errors of its own "CKR" library
 * whose reason is the CK_RV. Returns that code in words, without draining the
 * queue (log_sslerr prints it afterwards). */
static const char *
p11_queue_rv(void)
{
	unsigned long e;
	int lib;

	lib = ERR_get_CKR_code();
	e = ERR_peek_error();
	if (e != 0 && ERR_GET_LIB(e) == lib)
		return p11_rv_str((unsigned long)ERR_GET_REASON(e));
	e = ERR_peek_last_error();
	if (e != 0 && ERR_GET_LIB(e) == lib)
		return p11_rv_str((unsigned long)ERR_GET_REASON(e));
	return "no PKCS#11 return code";
}

/* ------------------------------------------------------------------------- */
/* Modules and tokens (all called with p11_lock held) */

/* Token keys sign through the EVP_PKEY_METHODs registered here (libp11 keys are
 * "foreign" to OpenSSL 3, so every EVP_DigestSign on them takes the legacy
 * method path: TLS 1.2 and 1.3, ECDSA, RSA PKCS#1 and PSS alike). Each is a copy
 * of libp11's method with its sign wrapped: a key with a signer pool attached
 * (p11_key_enable_async) signs through signer_sign(), which runs the signature on
 * a pool thread when the caller is inside an async job (a handshake); any other
 * key signs with libp11's own sign, unchanged (CA operations, `check`). */
static const int p11_meth_nids[] = { EVP_PKEY_RSA, EVP_PKEY_EC };
#define P11_NMETH (sizeof(p11_meth_nids) / sizeof(p11_meth_nids[0]))
static signer_sign_fn p11_orig_sign[P11_NMETH];
static int p11_ref_idx = -1;	/* EVP_PKEY ex_data: struct p11_keyref * */

/* What a signer thread needs to find a token key in a session of its own. */
struct p11_keyref {
	struct p11_token	*tok;
	char			*label;
	unsigned char		*id;
	size_t			 id_len;
	struct signer_pool	*pool;	/* NULL: sign on the calling thread */
	int			 own_sessions;	/* sign in per-thread raw sessions */
};

/* One raw session per thread that signs for a pool. libp11's own session pool
 * is not used there: in 0.4.12 a thread waits on a condition variable forever
 * when that pool is empty and C_OpenSession fails (token gone), so a short
 * token outage would wedge every signer thread for good. A failed call here
 * drops the session and the next signature opens a fresh one. */
static __thread struct {
	struct p11_token		*tok;
	const struct p11_keyref		*key;	/* whose handle obj is */
	CK_SESSION_HANDLE		 sess;
	CK_OBJECT_HANDLE		 obj;
	int				 has_sess;
} p11_thr;

static void
p11_keyref_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	struct p11_keyref *r = ptr;

	if (r == NULL)
		return;
	free(r->label);
	free(r->id);
	free(r);
}

/* Remembers where key lives (once per EVP_PKEY: libp11 may hand out the same
 * object again). Called with p11_lock held. */
static void
p11_keyref_attach(EVP_PKEY *key, struct p11_token *t, PKCS11_KEY *k)
{
	struct p11_keyref *r;

	if (p11_ref_idx < 0 || EVP_PKEY_get_ex_data(key, p11_ref_idx) != NULL)
		return;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return;
	r->tok = t;
	if ((k->label != NULL && (r->label = strdup(k->label)) == NULL) ||
	    (k->id_len > 0 && (r->id = malloc(k->id_len)) == NULL) ||
	    EVP_PKEY_set_ex_data(key, p11_ref_idx, r) != 1) {
		p11_keyref_free(NULL, r, NULL, 0, 0, NULL);
		ERR_clear_error();
		return;
	}
	if (k->id_len > 0)
		memcpy(r->id, k->id, k->id_len);
	r->id_len = k->id_len;
}

static struct p11_keyref *
p11_ctx_ref(EVP_PKEY_CTX *ctx)
{
	EVP_PKEY *pk;

	if (p11_ref_idx < 0 || (pk = EVP_PKEY_CTX_get0_pkey(ctx)) == NULL)
		return NULL;
	return EVP_PKEY_get_ex_data(pk, p11_ref_idx);
}

static void
p11_thr_drop(void)
{
	if (p11_thr.has_sess)
		(void)p11_thr.tok->mod->fl->C_CloseSession(p11_thr.sess);
	p11_thr.has_sess = 0;
	p11_thr.key = NULL;
	p11_thr.tok = NULL;
}

static CK_RV
p11_thr_find(const struct p11_keyref *r)
{
	CK_FUNCTION_LIST_PTR fl = r->tok->mod->fl;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[3];
	CK_ULONG n = 0, count = 0;
	CK_RV rv;

	tmpl[n].type = CKA_CLASS;
	tmpl[n].pValue = &cls;
	tmpl[n++].ulValueLen = sizeof(cls);
	if (r->label != NULL) {
		tmpl[n].type = CKA_LABEL;
		tmpl[n].pValue = r->label;
		tmpl[n++].ulValueLen = strlen(r->label);
	}
	if (r->id_len > 0) {
		tmpl[n].type = CKA_ID;
		tmpl[n].pValue = r->id;
		tmpl[n++].ulValueLen = r->id_len;
	}
	if ((rv = fl->C_FindObjectsInit(p11_thr.sess, tmpl, n)) != CKR_OK)
		return rv;
	rv = fl->C_FindObjects(p11_thr.sess, &p11_thr.obj, 1, &count);
	(void)fl->C_FindObjectsFinal(p11_thr.sess);
	if (rv == CKR_OK && count == 0)
		rv = CKR_KEY_HANDLE_INVALID;
	return rv;
}

static void p11_monitor_kick(void);

/* C_SignInit + C_Sign in this thread's session. Returns 0, or -1 with an
 * OpenSSL error naming the PKCS#11 call and code (the pool logs it). */
static int
p11_thr_sign(const struct p11_keyref *r, CK_MECHANISM *mech, const unsigned char *in,
    size_t inlen, unsigned char *out, CK_ULONG *outlen)
{
	CK_FUNCTION_LIST_PTR fl = r->tok->mod->fl;
	const char *call = "C_OpenSession";
	CK_RV rv = CKR_OK;

	if (p11_thr.has_sess && p11_thr.tok != r->tok)
		p11_thr_drop();
	if (!p11_thr.has_sess) {
		rv = fl->C_OpenSession(r->tok->slot_id, CKF_SERIAL_SESSION, NULL, NULL,
		    &p11_thr.sess);
		if (rv == CKR_OK) {
			p11_thr.has_sess = 1;
			p11_thr.tok = r->tok;
		}
	}
	if (rv == CKR_OK && p11_thr.key != r) {
		call = "C_FindObjects";
		if ((rv = p11_thr_find(r)) == CKR_OK)
			p11_thr.key = r;
	}
	if (rv == CKR_OK) {
		call = "C_SignInit";
		rv = fl->C_SignInit(p11_thr.sess, mech, p11_thr.obj);
	}
	if (rv == CKR_OK) {
		call = "C_Sign";
		rv = fl->C_Sign(p11_thr.sess, (CK_BYTE_PTR)in, inlen, out, outlen);
	}
	if (rv == CKR_OK)
		return 0;
	ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "%s on token '%s': %s",
	    call, r->tok->label, p11_rv_str(rv));
	p11_thr_drop();
	p11_monitor_kick();     /* /healthz should know now, not at the next interval */
	return -1;
}

static int
p11_ec_sign_raw(EVP_PKEY_CTX *ctx, unsigned char *sig, size_t *siglen,
    const unsigned char *tbs, size_t tbslen)
{
	struct p11_keyref *r = p11_ctx_ref(ctx);
	CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
	unsigned char rs[2 * 72], *p;
	CK_ULONG rslen = sizeof(rs);
	ECDSA_SIG *es = NULL;
	BIGNUM *br = NULL, *bs = NULL;
	int len, ret = 0;

	if (r == NULL || sig == NULL) {
		ERR_raise_data(ERR_LIB_USER, ERR_R_PASSED_NULL_PARAMETER, "not a token key");
		return 0;
	}
	if (p11_thr_sign(r, &mech, tbs, tbslen, rs, &rslen) == -1)
		return 0;
	/* CKM_ECDSA returns r || s; TLS and X.509 want the DER ECDSA-Sig-Value. */
	if (rslen == 0 || rslen % 2 != 0 ||
	    (br = BN_bin2bn(rs, (int)(rslen / 2), NULL)) == NULL ||
	    (bs = BN_bin2bn(rs + rslen / 2, (int)(rslen / 2), NULL)) == NULL ||
	    (es = ECDSA_SIG_new()) == NULL || ECDSA_SIG_set0(es, br, bs) != 1)
		goto fail;
	br = bs = NULL;
	if ((len = i2d_ECDSA_SIG(es, NULL)) <= 0 || (size_t)len > *siglen)
		goto fail;
	p = sig;
	*siglen = (size_t)i2d_ECDSA_SIG(es, &p);
	ret = 1;
fail:
	if (!ret)
		ERR_raise_data(ERR_LIB_USER, ERR_R_INTERNAL_ERROR, "bad ECDSA signature "
		    "from the token (%lu bytes)", (unsigned long)rslen);
	BN_free(br);
	BN_free(bs);
	ECDSA_SIG_free(es);
	return ret;
}

/* PKCS#11 hash and MGF1 constants for md. 0 when unknown. */
static int
p11_md_mech(const EVP_MD *md, CK_MECHANISM_TYPE *hash, CK_RSA_PKCS_MGF_TYPE *mgf)
{
	switch (EVP_MD_get_type(md)) {
	case NID_sha1: *hash = CKM_SHA_1; *mgf = CKG_MGF1_SHA1; return 1;
	case NID_sha224: *hash = CKM_SHA224; *mgf = CKG_MGF1_SHA224; return 1;
	case NID_sha256: *hash = CKM_SHA256; *mgf = CKG_MGF1_SHA256; return 1;
	case NID_sha384: *hash = CKM_SHA384; *mgf = CKG_MGF1_SHA384; return 1;
	case NID_sha512: *hash = CKM_SHA512; *mgf = CKG_MGF1_SHA512; return 1;
	default: return 0;
	}
}

/* PSS parameters from the context (TLS sets the digest's length as salt). */
static int
p11_pss_params(EVP_PKEY_CTX *ctx, const EVP_MD *md, CK_RSA_PKCS_PSS_PARAMS *pp)
{
	CK_MECHANISM_TYPE h;
	CK_RSA_PKCS_MGF_TYPE m;
	const EVP_MD *mgf1 = NULL;
	int salt = RSA_PSS_SALTLEN_DIGEST, hlen, emlen, bits;

	if (md == NULL || !p11_md_mech(md, &pp->hashAlg, &m))
		return -1;
	if (EVP_PKEY_CTX_get_rsa_mgf1_md(ctx, &mgf1) <= 0 || mgf1 == NULL)
		mgf1 = md;
	if (!p11_md_mech(mgf1, &h, &pp->mgf))
		return -1;
	(void)EVP_PKEY_CTX_get_rsa_pss_saltlen(ctx, &salt);
	hlen = EVP_MD_get_size(md);
	bits = EVP_PKEY_get_bits(EVP_PKEY_CTX_get0_pkey(ctx));
	emlen = (bits - 1 + 7) / 8;
	if (salt == RSA_PSS_SALTLEN_DIGEST)
		salt = hlen;
	else if (salt < 0)	/* RSA_PSS_SALTLEN_MAX / _AUTO */
		salt = emlen - hlen - 2;
	if (salt < 0)
		return -1;
	pp->sLen = (CK_ULONG)salt;
	return 0;
}

/* DER DigestInfo of a digest made with md (EMSA-PKCS1-v1_5), malloc'd. */
static unsigned char *
p11_digest_info(const EVP_MD *md, const unsigned char *d, size_t dlen, int *outlen)
{
	X509_SIG *xs;
	X509_ALGOR *alg;
	ASN1_OCTET_STRING *dig;
	unsigned char *der = NULL;

	*outlen = 0;
	if ((xs = X509_SIG_new()) == NULL)
		return NULL;
	X509_SIG_getm(xs, &alg, &dig);
	if (X509_ALGOR_set0(alg, OBJ_nid2obj(EVP_MD_get_type(md)), V_ASN1_NULL,
	    NULL) == 1 && ASN1_OCTET_STRING_set(dig, d, (int)dlen) == 1)
		*outlen = i2d_X509_SIG(xs, &der);
	X509_SIG_free(xs);
	if (*outlen <= 0) {
		OPENSSL_free(der);
		return NULL;
	}
	return der;
}

static int
p11_rsa_sign_raw(EVP_PKEY_CTX *ctx, unsigned char *sig, size_t *siglen,
    const unsigned char *tbs, size_t tbslen)
{
	struct p11_keyref *r = p11_ctx_ref(ctx);
	CK_RSA_PKCS_PSS_PARAMS pp;
	CK_MECHANISM mech = { CKM_RSA_PKCS, NULL, 0 };
	const EVP_MD *md = NULL;
	unsigned char *der = NULL;
	const unsigned char *in = tbs;
	CK_ULONG outlen = *siglen;
	size_t inlen = tbslen;
	int pad = RSA_PKCS1_PADDING, dlen, ret = 0;

	if (r == NULL || sig == NULL) {
		ERR_raise_data(ERR_LIB_USER, ERR_R_PASSED_NULL_PARAMETER, "not a token key");
		return 0;
	}
	(void)EVP_PKEY_CTX_get_rsa_padding(ctx, &pad);
	if (EVP_PKEY_CTX_get_signature_md(ctx, &md) <= 0)
		md = NULL;
	if (pad == RSA_PKCS1_PSS_PADDING) {
		if (p11_pss_params(ctx, md, &pp) == -1) {
			ERR_raise_data(ERR_LIB_USER, ERR_R_UNSUPPORTED, "RSA-PSS parameters "
			    "not supported by the token signer");
			return 0;
		}
		mech.mechanism = CKM_RSA_PKCS_PSS;
		mech.pParameter = &pp;
		mech.ulParameterLen = sizeof(pp);
	} else if (pad == RSA_PKCS1_PADDING) {
		if (md != NULL) {
			if ((der = p11_digest_info(md, tbs, tbslen, &dlen)) == NULL) {
				ERR_raise_data(ERR_LIB_USER, ERR_R_INTERNAL_ERROR,
				    "cannot encode the DigestInfo");
				return 0;
			}
			in = der;
			inlen = (size_t)dlen;
		}
	} else {
		ERR_raise_data(ERR_LIB_USER, ERR_R_UNSUPPORTED, "RSA padding %d not "
		    "supported by the token signer", pad);
		return 0;
	}
	if (p11_thr_sign(r, &mech, in, inlen, sig, &outlen) == 0) {
		*siglen = outlen;
		ret = 1;
	}
	OPENSSL_free(der);
	return ret;
}

static const signer_sign_fn p11_raw_sign[P11_NMETH] = {
	p11_rsa_sign_raw, p11_ec_sign_raw
};

static int
p11_sign_via(size_t i, EVP_PKEY_CTX *ctx, unsigned char *sig, size_t *siglen,
    const unsigned char *tbs, size_t tbslen)
{
	struct p11_keyref *r = sig != NULL ? p11_ctx_ref(ctx) : NULL;

	if (r == NULL || !r->own_sessions)
		return p11_orig_sign[i](ctx, sig, siglen, tbs, tbslen);
	/* With no pool signer_sign calls the raw signer right here. */
	return signer_sign(r->pool, p11_raw_sign[i], ctx, sig, siglen, tbs, tbslen);
}

static int
p11_sign_rsa(EVP_PKEY_CTX *ctx, unsigned char *sig, size_t *siglen,
    const unsigned char *tbs, size_t tbslen)
{
	return p11_sign_via(0, ctx, sig, siglen, tbs, tbslen);
}

static int
p11_sign_ec(EVP_PKEY_CTX *ctx, unsigned char *sig, size_t *siglen,
    const unsigned char *tbs, size_t tbslen)
{
	return p11_sign_via(1, ctx, sig, siglen, tbs, tbslen);
}

/* Registers a copy of libp11's method m with its sign wrapped. Falls back to
 * registering m itself (synchronous signing only). */
static void
p11_register_meth(size_t i, EVP_PKEY_METHOD *m)
{
	int (*init)(EVP_PKEY_CTX *) = NULL;
	signer_sign_fn sign = NULL;
	EVP_PKEY_METHOD *w;
	int id, flags;

	EVP_PKEY_meth_get0_info(&id, &flags, m);
	EVP_PKEY_meth_get_sign(m, &init, &sign);
	w = sign != NULL ? EVP_PKEY_meth_new(p11_meth_nids[i], flags) : NULL;
	if (w == NULL) {
		log_warn("cannot wrap the PKCS#11 %s method: token signatures stay "
		    "synchronous", OBJ_nid2sn(p11_meth_nids[i]));
		if (EVP_PKEY_meth_add0(m) != 1)
			ERR_clear_error();
		return;
	}
	EVP_PKEY_meth_copy(w, m);
	p11_orig_sign[i] = sign;
	EVP_PKEY_meth_set_sign(w, init, i == 0 ? p11_sign_rsa : p11_sign_ec);
	/* Fails only if OpenSSL already holds one: nothing to do then. */
	if (EVP_PKEY_meth_add0(w) != 1) {
		p11_orig_sign[i] = NULL;
		EVP_PKEY_meth_free(w);
		ERR_clear_error();
	}
}

static void
p11_register_meths(void)
{
	EVP_PKEY_METHOD *m;
	size_t i;

	ERR_load_PKCS11_strings();
	p11_ref_idx = EVP_PKEY_get_ex_new_index(0, NULL, NULL, NULL, p11_keyref_free);
	for (i = 0; i < P11_NMETH; i++) {
		m = NULL;
		if (PKCS11_pkey_meths(NULL, &m, NULL, p11_meth_nids[i]) != 1 || m == NULL) {
			ERR_clear_error();
			continue;
		}
		p11_register_meth(i, m);
	}
}

int
p11_key_enable_async(EVP_PKEY *key, struct signer_pool *pool)
{
	struct p11_keyref *r;
	size_t i;
	int id;

	pthread_once(&p11_meth_once, p11_register_meths);
	if (key == NULL || p11_ref_idx < 0 ||
	    (r = EVP_PKEY_get_ex_data(key, p11_ref_idx)) == NULL) {
		if (pool != NULL)
			log_info("the server key is not a token key: signing stays on "
			    "the event loop");
		return -1;
	}
	id = EVP_PKEY_get_base_id(key);
	for (i = 0; i < P11_NMETH && p11_meth_nids[i] != id; i++)
		;
	if (i == P11_NMETH || p11_orig_sign[i] == NULL) {
		if (pool != NULL)
			log_warn("no asynchronous signing for %s token keys: signing stays "
			    "on the event loop", OBJ_nid2sn(id));
		return -1;
	}
	r->pool = pool;
	r->own_sessions = 1;
	return 0;
}

/* Resolves module-name (RFC 7512: the name without directory or extension). */
static char *
p11_module_by_name(const char *name)
{
	static const char *const dirs[] = {
		"/usr/lib/x86_64-linux-gnu/pkcs11", "/usr/lib/softhsm",
		"/usr/lib/x86_64-linux-gnu", "/usr/lib/pkcs11", "/usr/local/lib",
	};
	char path[PATH_MAX];
	size_t i;
	int lib;

	if (strchr(name, '/') != NULL || *name == '\0')
		return NULL;
	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		for (lib = 0; lib < 2; lib++) {
			snprintf(path, sizeof(path), "%s/%s%s.so", dirs[i],
			    lib ? "lib" : "", name);
			if (access(path, R_OK) == 0)
				return strdup(path);
		}
	}
	return NULL;
}

static void
p11_module_free(struct p11_module *m)
{
	if (m == NULL)
		return;
	if (m->dl != NULL)
		dlclose(m->dl);
	if (m->ctx != NULL) {
		if (m->slots != NULL)
			PKCS11_release_all_slots(m->ctx, m->slots, m->nslots);
		PKCS11_CTX_unload(m->ctx);
		PKCS11_CTX_free(m->ctx);
	}
	free(m->path);
	free(m);
	ERR_clear_error();
}

/* Our own view of the module libp11 already initialised. */
static int
p11_module_raw(struct p11_module *m, const char *red)
{
	CK_RV (*getfl)(CK_FUNCTION_LIST_PTR_PTR);
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv;

	if ((m->dl = dlopen(m->path, RTLD_NOW)) == NULL) {
		log_err("%s: dlopen %s: %s", red, m->path, dlerror());
		return -1;
	}
	*(void **)&getfl = dlsym(m->dl, "C_GetFunctionList");
	if (getfl == NULL) {
		log_err("%s: %s has no C_GetFunctionList", red, m->path);
		return -1;
	}
	if ((rv = getfl(&m->fl)) != CKR_OK || m->fl == NULL) {
		log_err("%s: C_GetFunctionList: %s", red, p11_rv_str(rv));
		return -1;
	}
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = m->fl->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		log_err("%s: C_Initialize: %s", red, p11_rv_str(rv));
		return -1;
	}
	return 0;
}

static struct p11_module *
p11_module_get(const char *path, const char *softhsm2_conf, const char *red)
{
	struct p11_module *m;

	for (m = p11_modules; m != NULL; m = m->next)
		if (strcmp(m->path, path) == 0)
			return m;
	pthread_once(&p11_meth_once, p11_register_meths);
	/* SoftHSM reads its configuration when the module initialises. */
	if (softhsm2_conf != NULL && *softhsm2_conf != '\0' &&
	    setenv("SOFTHSM2_CONF", softhsm2_conf, 1) == -1) {
		log_err("%s: setenv SOFTHSM2_CONF: %s", red, strerror(errno));
		return NULL;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL || (m->path = strdup(path)) == NULL) {
		log_err("%s: out of memory", red);
		free(m);
		return NULL;
	}
	if ((m->ctx = PKCS11_CTX_new()) == NULL) {
		log_sslerr("%s: PKCS11_CTX_new", red);
		goto fail;
	}
	if (PKCS11_CTX_load(m->ctx, path) != 0) {
		log_sslerr("%s: cannot load PKCS#11 module %s (%s)", red, path,
		    p11_queue_rv());
		PKCS11_CTX_free(m->ctx);
		m->ctx = NULL;
		goto fail;
	}
	if (PKCS11_enumerate_slots(m->ctx, &m->slots, &m->nslots) != 0) {
		log_sslerr("%s: cannot list slots of %s (%s)", red, path,
		    p11_queue_rv());
		m->slots = NULL;
		goto fail;
	}
	if (p11_module_raw(m, red) == -1)
		goto fail;
	m->next = p11_modules;
	p11_modules = m;
	return m;
fail:
	p11_module_free(m);
	return NULL;
}

static int
p11_slot_matches(PKCS11_SLOT *s, const struct p11_uri *u, const char *label)
{
	PKCS11_TOKEN *t = s->token;

	if (t == NULL || !t->initialized || t->label == NULL)
		return 0;
	if (strcmp(t->label, label) != 0)
		return 0;
	if (u->manufacturer && (!t->manufacturer || strcmp(t->manufacturer, u->manufacturer)))
		return 0;
	if (u->model && (!t->model || strcmp(t->model, u->model)))
		return 0;
	if (u->serial && (!t->serialnr || strcmp(t->serialnr, u->serial)))
		return 0;
	if (u->slot_id >= 0 && PKCS11_get_slotid_from_slot(s) != (unsigned long)u->slot_id)
		return 0;
	return 1;
}

/* The slot list is read once per module: PKCS11_update_slots crashes in libp11
 * 0.4.12, and tokens are created before certgate starts. */
static PKCS11_SLOT *
p11_find_slot(struct p11_module *m, const struct p11_uri *u, const char *label)
{
	unsigned int i;

	for (i = 0; i < m->nslots; i++)
		if (p11_slot_matches(&m->slots[i], u, label))
			return &m->slots[i];
	return NULL;
}

/* Opens our raw session and makes sure the user is logged in (login state is
 * per application, so libp11's login usually already covers it). */
static int
p11_token_session(struct p11_token *t, const char *pin, const char *red)
{
	CK_FUNCTION_LIST_PTR fl = t->mod->fl;
	CK_SESSION_INFO si;
	CK_RV rv;

	if (!t->has_sess) {
		rv = fl->C_OpenSession(t->slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION,
		    NULL, NULL, &t->sess);
		if (rv == CKR_TOKEN_WRITE_PROTECTED)
			rv = fl->C_OpenSession(t->slot_id, CKF_SERIAL_SESSION, NULL, NULL,
			    &t->sess);
		if (rv != CKR_OK) {
			log_err("%s: C_OpenSession on token '%s': %s", red, t->label,
			    p11_rv_str(rv));
			return -1;
		}
		t->has_sess = 1;
	}
	if (!t->need_login)
		return 0;
	rv = fl->C_GetSessionInfo(t->sess, &si);
	if (rv == CKR_OK && (si.state == CKS_RO_USER_FUNCTIONS ||
	    si.state == CKS_RW_USER_FUNCTIONS))
		return 0;
	if (pin == NULL) {
		log_err("%s: token '%s' is not logged in and no PIN is at hand", red,
		    t->label);
		return -1;
	}
	rv = fl->C_Login(t->sess, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	t->login_rv = rv;
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		log_err("%s: C_Login on token '%s': %s", red, t->label, p11_rv_str(rv));
		return -1;
	}
	return 0;
}

static void
p11_token_free(struct p11_token *t)
{
	if (t == NULL)
		return;
	if (t->has_sess)
		(void)t->mod->fl->C_CloseSession(t->sess);
	free(t->label);
	free(t->pin_file);
	free(t->pin_env);
	free(t);
}

/* Reads the PIN (literal or from its source). NULL with an error logged. */
static char *
p11_token_pin(const char *lit, const char *file, const char *env, const char *red)
{
	char err[256], *pin = NULL;

	if (lit != NULL)
		return strdup(lit);
	if (p11_read_secret(file, env, &pin, err, sizeof(err)) == -1) {
		log_err("%s: %s", red, err);
		return NULL;
	}
	return pin;
}

static int
p11_token_login(struct p11_token *t, char *lit, const char *red)
{
	char *pin = NULL;
	int in = 0, ret = -1;

	if (t->need_login) {
		if (PKCS11_is_logged_in(t->slot, 0, &in) != 0) {
			ERR_clear_error();
			in = 0;
		}
		if ((pin = p11_token_pin(lit, t->pin_file, t->pin_env, red)) == NULL)
			goto done;
		if (!in && PKCS11_login(t->slot, 0, pin) != 0) {
			log_sslerr("%s: login to token '%s' failed: %s", red, t->label,
			    p11_queue_rv());
			goto done;
		}
	}
	ret = p11_token_session(t, pin, red);
done:
	p11_secret_free(pin);
	return ret;
}

/* Finds or opens the token named by u (or the defaults). */
static struct p11_token *
p11_token_get(const struct p11_defaults *d, const struct p11_uri *u, const char *red)
{
	struct p11_module *m;
	struct p11_token *t = NULL;
	const char *label, *path;
	char *byname = NULL, *lit = NULL;

	label = u->token != NULL ? u->token : d->token;
	if (label == NULL || *label == '\0') {
		log_err("%s: no token label: add token=LABEL to the URI or set "
		    "pkcs11.token in the config", red);
		return NULL;
	}
	path = u->module_path;
	if (path == NULL && u->module_name != NULL) {
		if ((path = byname = p11_module_by_name(u->module_name)) == NULL) {
			log_err("%s: module-name '%s' not found; use module-path", red,
			    u->module_name);
			return NULL;
		}
	}
	if (path == NULL)
		path = d->module;
	if (path == NULL || *path == '\0') {
		log_err("%s: no PKCS#11 module: add module-path to the URI or set "
		    "pkcs11.module in the config", red);
		goto fail;
	}
	for (t = p11_tokens; t != NULL; t = t->next)
		if (strcmp(t->mod->path, path) == 0 && strcmp(t->label, label) == 0) {
			free(byname);
			return t;
		}
	if ((m = p11_module_get(path, d->softhsm2_conf, red)) == NULL)
		goto fail;
	if ((t = calloc(1, sizeof(*t))) == NULL || (t->label = strdup(label)) == NULL) {
		log_err("%s: out of memory", red);
		goto fail;
	}
	t->mod = m;
	if ((t->slot = p11_find_slot(m, u, label)) == NULL) {
		log_err("%s: token '%s' not found in %s (%s)", red, label, path,
		    p11_rv_str(CKR_TOKEN_NOT_PRESENT));
		goto fail;
	}
	t->slot_id = PKCS11_get_slotid_from_slot(t->slot);
	t->need_login = t->slot->token->loginRequired;
	if (t->need_login && p11_pin_source(d, u, &lit, &t->pin_file, &t->pin_env) == -1) {
		log_err("%s: out of memory", red);
		goto fail;
	}
	if (p11_token_login(t, lit, red) == -1)
		goto fail;
	p11_secret_free(lit);
	free(byname);
	t->next = p11_tokens;
	p11_tokens = t;
	return t;
fail:
	p11_secret_free(lit);
	p11_token_free(t);
	free(byname);
	return NULL;
}

/* ------------------------------------------------------------------------- */
/* Objects */

/* Finds up to two objects of class cls (or any class when cls is -1) with the
 * given label and/or id. Returns the count (0..2) and the first handle, or -1. */
static int
p11_raw_find(struct p11_token *t, long cls, const char *label,
    const unsigned char *id, size_t id_len, CK_OBJECT_HANDLE *obj, const char *red)
{
	CK_FUNCTION_LIST_PTR fl = t->mod->fl;
	CK_OBJECT_CLASS c = (CK_OBJECT_CLASS)cls;
	CK_OBJECT_HANDLE found[2];
	CK_ATTRIBUTE tmpl[3];
	CK_ULONG n = 0, count = 0;
	CK_RV rv;

	if (cls >= 0) {
		tmpl[n].type = CKA_CLASS;
		tmpl[n].pValue = &c;
		tmpl[n++].ulValueLen = sizeof(c);
	}
	if (label != NULL) {
		tmpl[n].type = CKA_LABEL;
		tmpl[n].pValue = (void *)label;
		tmpl[n++].ulValueLen = strlen(label);
	}
	if (id != NULL) {
		tmpl[n].type = CKA_ID;
		tmpl[n].pValue = (void *)id;
		tmpl[n++].ulValueLen = id_len;
	}
	if ((rv = fl->C_FindObjectsInit(t->sess, tmpl, n)) != CKR_OK) {
		log_err("%s: C_FindObjectsInit: %s", red, p11_rv_str(rv));
		return -1;
	}
	rv = fl->C_FindObjects(t->sess, found, 2, &count);
	(void)fl->C_FindObjectsFinal(t->sess);
	if (rv != CKR_OK) {
		log_err("%s: C_FindObjects: %s", red, p11_rv_str(rv));
		return -1;
	}
	if (count > 0)
		*obj = found[0];
	return (int)count;
}

static int
p11_raw_flags(struct p11_token *t, CK_OBJECT_HANDLE obj, int *sensitive,
    int *extractable, const char *red)
{
	CK_BBOOL s = CK_FALSE, e = CK_TRUE;
	CK_ATTRIBUTE a[2] = {
		{ CKA_SENSITIVE, &s, sizeof(s) },
		{ CKA_EXTRACTABLE, &e, sizeof(e) },
	};
	CK_RV rv;

	if ((rv = t->mod->fl->C_GetAttributeValue(t->sess, obj, a, 2)) != CKR_OK) {
		log_err("%s: reading CKA_SENSITIVE/CKA_EXTRACTABLE: %s", red,
		    p11_rv_str(rv));
		return -1;
	}
	*sensitive = s == CK_TRUE;
	*extractable = e == CK_TRUE;
	return 0;
}

/* The private key libp11 knows for u's object/id (valid until the next
 * enumeration, i.e. while p11_lock is held). */
static PKCS11_KEY *
p11_lib_key(struct p11_token *t, const char *object, const unsigned char *id,
    size_t id_len, const char *red)
{
	PKCS11_KEY *keys, *found = NULL;
	unsigned int n, i, count = 0;

	if (PKCS11_enumerate_keys(t->slot->token, &keys, &n) != 0) {
		log_sslerr("%s: cannot list keys of token '%s' (%s)", red, t->label,
		    p11_queue_rv());
		return NULL;
	}
	for (i = 0; i < n; i++) {
		if (object != NULL && (keys[i].label == NULL ||
		    strcmp(keys[i].label, object) != 0))
			continue;
		if (id != NULL && (keys[i].id_len != id_len ||
		    memcmp(keys[i].id, id, id_len) != 0))
			continue;
		if (count++ == 0)
			found = &keys[i];
	}
	if (found == NULL) {
		log_err("%s: no private key with that %s in token '%s'", red,
		    object && id ? "label and id" : id ? "id" : object ? "label" :
		    "description", t->label);
		return NULL;
	}
	if (count > 1 && object == NULL && id == NULL) {
		log_err("%s: token '%s' holds %u private keys: name one with object= "
		    "or id=", red, t->label, count);
		return NULL;
	}
	if (count > 1)
		log_warn("%s: %u private keys match; using the first", red, count);
	return found;
}

/* Parses uri and opens its token. On success the lock is held. */
static struct p11_token *
p11_begin(const struct p11_defaults *d, const char *uri, struct p11_uri *u,
    char **red)
{
	static const struct p11_defaults none;
	struct p11_token *t;
	char err[256];

	if (d == NULL)
		d = &none;
	memset(u, 0, sizeof(*u));       /* p11_end frees it whatever fails first */
	if ((*red = p11_uri_redact(uri)) == NULL) {
		log_err("out of memory");
		return NULL;
	}
	if (p11_uri_parse(uri, u, err, sizeof(err)) == -1) {
		log_err("%s: %s", *red, err);
		return NULL;
	}
	if (u->type != NULL && strcmp(u->type, "private") != 0) {
		log_err("%s: type=%s: only private keys are supported", *red, u->type);
		return NULL;
	}
	pthread_mutex_lock(&p11_lock);
	if ((t = p11_token_get(d, u, *red)) == NULL)
		pthread_mutex_unlock(&p11_lock);
	return t;
}

static void
p11_end(struct p11_uri *u, char *red, int locked)
{
	if (locked)
		pthread_mutex_unlock(&p11_lock);
	p11_uri_free(u);
	free(red);
}

/* Raw handle of libp11's key k, for attribute reads. */
static int
p11_key_handle(struct p11_token *t, PKCS11_KEY *k, CK_OBJECT_HANDLE *obj,
    const char *red)
{
	int n;

	n = p11_raw_find(t, CKO_PRIVATE_KEY, k->label, k->id_len ? k->id : NULL,
	    k->id_len, obj, red);
	if (n == 0)
		log_err("%s: key vanished from token '%s'", red, t->label);
	return n > 0 ? 0 : -1;
}

static EVP_PKEY *
p11_lib_pkey(PKCS11_KEY *k, const char *red)
{
	EVP_PKEY *pk;

	if ((pk = PKCS11_get_private_key(k)) == NULL)
		log_sslerr("%s: PKCS11_get_private_key (%s)", red,
		    p11_queue_rv());
	return pk;
}

int
p11_load_private_key(const struct p11_defaults *d, const char *uri,
    int allow_extractable, EVP_PKEY **out)
{
	struct p11_uri u;
	struct p11_token *t;
	CK_OBJECT_HANDLE obj;
	PKCS11_KEY *k;
	char *red = NULL;
	int sens, extr, ret = -1;

	*out = NULL;
	if ((t = p11_begin(d, uri, &u, &red)) == NULL) {
		p11_end(&u, red, 0);
		return -1;
	}
	if ((k = p11_lib_key(t, u.object, u.id, u.id_len, red)) == NULL)
		goto fail;
	if (p11_key_handle(t, k, &obj, red) == -1 ||
	    p11_raw_flags(t, obj, &sens, &extr, red) == -1)
		goto fail;
	if (!sens || extr) {
		if (!allow_extractable) {
			log_err("%s: the key is %s%s%s: refusing to use a key that can "
			    "leave the token (set tls.allow_extractable_key to override)",
			    red, extr ? "extractable" : "", extr && !sens ? " and " : "",
			    sens ? "" : "not sensitive");
			goto fail;
		}
		log_warn("%s: using a key that is %s (tls.allow_extractable_key)",
		    red, extr ? "extractable" : "not sensitive");
	}
	if ((*out = p11_lib_pkey(k, red)) == NULL)
		goto fail;
	p11_keyref_attach(*out, t, k);
	ret = 0;
fail:
	p11_end(&u, red, 1);
	return ret;
}

static int
p11_genkey(struct p11_token *t, const char *label, const unsigned char *id,
    size_t id_len, const char *red)
{
	static const CK_BYTE p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
	    0x03, 0x01, 0x07 };
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_HANDLE pub, priv;
	CK_ULONG llen = strlen(label);
	CK_ATTRIBUTE pubt[] = {
		{ CKA_EC_PARAMS, (void *)p256, sizeof(p256) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)label, llen },
		{ CKA_ID, (void *)id, id_len },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)label, llen },
		{ CKA_ID, (void *)id, id_len },
	};
	CK_RV rv;

	rv = t->mod->fl->C_GenerateKeyPair(t->sess, &mech, pubt,
	    sizeof(pubt) / sizeof(pubt[0]), privt, sizeof(privt) / sizeof(privt[0]),
	    &pub, &priv);
	if (rv != CKR_OK) {
		log_err("%s: C_GenerateKeyPair in token '%s': %s", red, t->label,
		    p11_rv_str(rv));
		return -1;
	}
	return 0;
}

int
p11_generate_ec_key(const struct p11_defaults *d, const char *uri, EVP_PKEY **out)
{
	unsigned char rid[16];
	const unsigned char *id;
	struct p11_uri u;
	struct p11_token *t;
	CK_OBJECT_HANDLE obj;
	PKCS11_KEY *k;
	char *red = NULL;
	size_t id_len;
	int n, ret = -1;

	*out = NULL;
	if ((t = p11_begin(d, uri, &u, &red)) == NULL) {
		p11_end(&u, red, 0);
		return -1;
	}
	if (u.object == NULL || *u.object == '\0') {
		log_err("%s: object= (the key label) is required to generate a key", red);
		goto fail;
	}
	if ((n = p11_raw_find(t, -1, u.object, NULL, 0, &obj, red)) == -1)
		goto fail;
	if (n > 0) {
		log_err("%s: an object labelled '%s' already exists in token '%s'", red,
		    u.object, t->label);
		goto fail;
	}
	id = u.id;
	id_len = u.id_len;
	if (id == NULL || id_len == 0) {
		if (RAND_bytes(rid, sizeof(rid)) != 1) {
			log_sslerr("%s: RAND_bytes", red);
			goto fail;
		}
		id = rid;
		id_len = sizeof(rid);
	}
	if (p11_genkey(t, u.object, id, id_len, red) == -1)
		goto fail;
	/* libp11 re-lists the token's objects on every enumeration and keeps the
	 * ones it knows, so the new key shows up here. */
	if ((k = p11_lib_key(t, u.object, id, id_len, red)) == NULL ||
	    (*out = p11_lib_pkey(k, red)) == NULL)
		goto fail;
	log_info("%s: generated EC P-256 key in token '%s'", red, t->label);
	ret = 0;
fail:
	p11_end(&u, red, 1);
	return ret;
}

int
p11_key_exists(const struct p11_defaults *d, const char *uri)
{
	struct p11_uri u;
	struct p11_token *t;
	CK_OBJECT_HANDLE obj;
	char *red = NULL;
	int n;

	if ((t = p11_begin(d, uri, &u, &red)) == NULL) {
		p11_end(&u, red, 0);
		return -1;
	}
	n = p11_raw_find(t, CKO_PRIVATE_KEY, u.object, u.id, u.id_len, &obj, red);
	p11_end(&u, red, 1);
	return n < 0 ? -1 : n > 0;
}

/* ------------------------------------------------------------------------- */
/* Health and shutdown */

static int
p11_token_check(struct p11_token *t)
{
	CK_FUNCTION_LIST_PTR fl = t->mod->fl;
	CK_SESSION_INFO si;
	char red[300], *pin = NULL;
	CK_RV rv = CKR_SESSION_HANDLE_INVALID;
	int ret;

	if (t->has_sess && (rv = fl->C_GetSessionInfo(t->sess, &si)) == CKR_OK &&
	    (!t->need_login || si.state == CKS_RO_USER_FUNCTIONS ||
	    si.state == CKS_RW_USER_FUNCTIONS))
		return 1;
	snprintf(red, sizeof(red), "pkcs11:token=%s", t->label);
	log_warn("%s: session check failed (%s); re-opening", red,
	    !t->has_sess ? "no open session" : rv == CKR_OK ? "logged out" :
	    p11_rv_str(rv));
	if (t->has_sess && rv != CKR_OK) {
		(void)fl->C_CloseSession(t->sess);
		t->has_sess = 0;
	}
	/* libp11 0.4.12 keeps handing out pooled sessions that the token no longer
	 * knows; this empties its pool (same read-only mode, so nothing is closed)
	 * and later signatures open fresh sessions. Done before our own session is
	 * opened in case libp11 does close all sessions. */
	if (PKCS11_open_session(t->slot, 0) != 0)
		ERR_clear_error();
	if (t->need_login && t->pin_file == NULL && t->pin_env == NULL) {
		log_err("%s: cannot log in again: the PIN came from pin-value", red);
		return 0;
	}
	if (t->need_login && (pin = p11_token_pin(NULL, t->pin_file, t->pin_env,
	    red)) == NULL)
		return 0;
	ret = p11_token_session(t, pin, red) == 0;
	p11_secret_free(pin);
	return ret;
}

static struct {
	pthread_mutex_t mtx;
	pthread_cond_t cv;
	pthread_t thr;
	int running, stop, kick;
	int interval_ms;
	int ok;                 /* atomic: last result */
	long logins;            /* atomic */
} p11_mon = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, .ok = 1 };

/* A wrong or blocked PIN will not get better by trying again: each try may count
 * against the token's retry limit. */
static int
p11_pin_fatal(CK_RV rv)
{
	return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED ||
	    rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE;
}

/* One token: 1 usable, 0 not. Called with p11_lock held. */
static int
p11_token_health(struct p11_token *t, time_t now)
{
	CK_SESSION_INFO si;

	if (t->has_sess && t->mod->fl->C_GetSessionInfo(t->sess, &si) == CKR_OK &&
	    (!t->need_login || si.state == CKS_RO_USER_FUNCTIONS ||
	    si.state == CKS_RW_USER_FUNCTIONS))
		return 1;
	if (t->pin_stop || now < t->retry_at)
		return 0;
	t->login_rv = CKR_OK;
	if (t->need_login)
		__atomic_add_fetch(&p11_mon.logins, 1, __ATOMIC_RELAXED);
	if (p11_token_check(t)) {
		t->backoff_s = 0;
		t->retry_at = 0;
		return 1;
	}
	if (t->need_login && p11_pin_fatal(t->login_rv)) {
		t->pin_stop = 1;
		log_err("token '%s': %s: not logging in again until the PIN is fixed and "
		    "the gateway gets SIGHUP (each try may count against the token's PIN "
		    "retry limit)", t->label, p11_rv_str(t->login_rv));
		return 0;
	}
	t->backoff_s = t->backoff_s == 0 ? 1 : t->backoff_s >= 150 ? 300 : t->backoff_s * 2;
	t->retry_at = now + t->backoff_s;
	log_warn("token '%s' unusable; next attempt in %d s", t->label, t->backoff_s);
	return 0;
}

int
p11_health_check(void)
{
	struct p11_token *t;
	time_t now = time(NULL);
	int ok = 1;

	pthread_mutex_lock(&p11_lock);
	for (t = p11_tokens; t != NULL; t = t->next)
		if (!p11_token_health(t, now))
			ok = 0;
	pthread_mutex_unlock(&p11_lock);
	__atomic_store_n(&p11_mon.ok, ok, __ATOMIC_RELEASE);
	return ok;
}

int
p11_health(void)
{
	return __atomic_load_n(&p11_mon.ok, __ATOMIC_ACQUIRE);
}

long
p11_health_logins(void)
{
	return __atomic_load_n(&p11_mon.logins, __ATOMIC_RELAXED);
}

/* Asks the monitor for a check now. Never blocks for long (the monitor holds its
 * mutex only between checks). */
static void
p11_monitor_kick(void)
{
	pthread_mutex_lock(&p11_mon.mtx);
	p11_mon.kick = 1;
	pthread_cond_signal(&p11_mon.cv);
	pthread_mutex_unlock(&p11_mon.mtx);
}

void
p11_health_reset(void)
{
	struct p11_token *t;

	pthread_mutex_lock(&p11_lock);
	for (t = p11_tokens; t != NULL; t = t->next) {
		t->pin_stop = 0;
		t->backoff_s = 0;
		t->retry_at = 0;
	}
	pthread_mutex_unlock(&p11_lock);
	p11_monitor_kick();
}

static void *
p11_monitor_main(void *arg)
{
	struct timespec ts;

	(void)arg;
	pthread_mutex_lock(&p11_mon.mtx);
	while (!p11_mon.stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += p11_mon.interval_ms / 1000;
		ts.tv_nsec += (long)(p11_mon.interval_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!p11_mon.stop && !p11_mon.kick &&
		    pthread_cond_timedwait(&p11_mon.cv, &p11_mon.mtx, &ts) == 0)
			;
		if (p11_mon.stop)
			break;
		p11_mon.kick = 0;
		pthread_mutex_unlock(&p11_mon.mtx);
		(void)p11_health_check();
		pthread_mutex_lock(&p11_mon.mtx);
	}
	pthread_mutex_unlock(&p11_mon.mtx);
	return NULL;
}

int
p11_monitor_start(int interval_ms)
{
	int rc;

	if (p11_mon.running)
		return 0;
	p11_mon.interval_ms = interval_ms > 0 ? interval_ms : 5000;
	p11_mon.stop = p11_mon.kick = 0;
	if ((rc = pthread_create(&p11_mon.thr, NULL, p11_monitor_main, NULL)) != 0) {
		log_err("cannot start the token monitor thread: %s", strerror(rc));
		return -1;
	}
	p11_mon.running = 1;
	return 0;
}

void
p11_monitor_stop(void)
{
	if (!p11_mon.running)
		return;
	pthread_mutex_lock(&p11_mon.mtx);
	p11_mon.stop = 1;
	pthread_cond_signal(&p11_mon.cv);
	pthread_mutex_unlock(&p11_mon.mtx);
	pthread_join(p11_mon.thr, NULL);
	p11_mon.running = 0;
}

void
p11_shutdown(void)
{
	struct p11_module *m;
	struct p11_token *t;

	pthread_mutex_lock(&p11_lock);
	while ((t = p11_tokens) != NULL) {
		p11_tokens = t->next;
		if (t->need_login && PKCS11_logout(t->slot) != 0)
			ERR_clear_error();
		p11_token_free(t);
	}
	while ((m = p11_modules) != NULL) {
		p11_modules = m->next;
		p11_module_free(m);
	}
	pthread_mutex_unlock(&p11_lock);
}
