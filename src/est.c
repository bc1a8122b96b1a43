/* EST and OCSP request handling for the gateway, pure of sockets (est.h). */
#include "est.h"

#include <sys/stat.h>

#include <ctype.h>
#include <pthread.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>

#include "base64.h"
#include "buf.h"
#include "certify.h"
#include "file.h"

#define EST_PREFIX	"/.well-known/est/"
#define EST_CT_TEXT	"text/plain; charset=utf-8"
#define EST_CT_P7	"application/pkcs7-mime"
#define EST_CT_P7CERTS	"application/pkcs7-mime; smime-type=certs-only"
#define EST_CT_OCSP	"application/ocsp-response"
#define EST_REALM	"Basic realm=\"certgate EST\", Bearer realm=\"certgate EST\""
#define EST_RETRY_S	5	/* Retry-After when the CA service is unreachable */

/* /cacerts follows the CA file (a CA rollover or retire rewrites it while the
 * gateway runs): rebuilt on the first request after it changed, under mu. */
struct est_live {
	pthread_mutex_t mu;
	char *path;
	struct stat st;
};

struct est {
	STACK_OF(X509) *cas;
	char *cacerts;           /* base64 of the certs-only PKCS#7; under live->mu */
	size_t cacerts_len;
	struct est_live *live;   /* NULL for est_new_mem */
};

enum est_route { EST_R_NONE, EST_R_CACERTS, EST_R_ENROLL, EST_R_REENROLL, EST_R_OCSP,
	EST_R_OCSP_GET, EST_R_OTHER_EST };

static enum est_route
est_route(const char *path)
{
	if (path == NULL)
		return EST_R_NONE;
	if (strcmp(path, EST_PREFIX "cacerts") == 0)
		return EST_R_CACERTS;
	if (strcmp(path, EST_PREFIX "simpleenroll") == 0)
		return EST_R_ENROLL;
	if (strcmp(path, EST_PREFIX "simplereenroll") == 0)
		return EST_R_REENROLL;
	if (strcmp(path, "/ocsp") == 0)
		return EST_R_OCSP;
	if (strncmp(path, "/ocsp/", 6) == 0)
		return EST_R_OCSP_GET;
	if (strncmp(path, EST_PREFIX, strlen(EST_PREFIX)) == 0)
		return EST_R_OTHER_EST;
	return EST_R_NONE;
}

int
est_path(const char *path)
{
	return est_route(path) != EST_R_NONE;
}

/* ---- responses ----------------------------------------------------------------- */

static void
est_set_body(struct est_response *resp, const char *ct, const void *p, size_t n)
{
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
	resp->content_type = ct;
	if ((resp->body = malloc(n + 1)) == NULL) {
		resp->status = 500;
		resp->content_type = EST_CT_TEXT;
		return;
	}
	memcpy(resp->body, p, n);
	resp->body[n] = '\0';
	resp->body_len = n;
}

/* A plain-text answer; the message is made printable (it may quote a CA message). */
static void __attribute__((format(printf, 3, 4)))
est_text(struct est_response *resp, int status, const char *fmt, ...)
{
	char msg[512];
	size_t i;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	for (i = 0; msg[i]; i++)
		if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] >= 0x7f)
			msg[i] = '?';
	msg[i++] = '\n';
	resp->status = status;
	est_set_body(resp, EST_CT_TEXT, msg, i);
}

/* An OCSPResponse without a body (malformedRequest, internalError, tryLater). */
static void
est_ocsp_status(struct est_response *resp, int status)
{
	OCSP_RESPONSE *r = OCSP_response_create(status, NULL);
	unsigned char *der = NULL;
	int n;

	if (r == NULL || (n = i2d_OCSP_RESPONSE(r, &der)) <= 0) {
		OCSP_RESPONSE_free(r);
		ERR_clear_error();
		est_text(resp, 500, "cannot encode an OCSP response");
		return;
	}
	resp->status = 200;
	est_set_body(resp, EST_CT_OCSP, der, (size_t)n);
	OPENSSL_free(der);
	OCSP_RESPONSE_free(r);
}

/* base64 (64-character lines) of a certs-only PKCS#7 holding certs. */
static int
est_certs_only(STACK_OF(X509) *certs, struct buf *out)
{
	PKCS7 *p7 = NULL;
	unsigned char *der = NULL;
	int i, n, rc = -1;

	if ((p7 = PKCS7_new()) == NULL || !PKCS7_set_type(p7, NID_pkcs7_signed) ||
	    !PKCS7_content_new(p7, NID_pkcs7_data))
		goto out;
	for (i = 0; i < sk_X509_num(certs); i++)
		if (!PKCS7_add_certificate(p7, sk_X509_value(certs, i)))
			goto out;
	if ((n = i2d_PKCS7(p7, &der)) <= 0)
		goto out;
	rc = base64_encode(out, der, (size_t)n, 0, 64);
out:
	ERR_clear_error();
	OPENSSL_free(der);
	PKCS7_free(p7);
	return rc;
}

/* ---- context ------------------------------------------------------------------- */

struct est *
est_new_mem(const char *pem, size_t len, char *err, size_t errlen)
{
	struct est *e;
	struct buf b;
	X509 *x;
	BIO *bio;

	if ((e = calloc(1, sizeof(*e))) == NULL || (e->cas = sk_X509_new_null()) == NULL) {
		free(e);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
		goto fail;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(e->cas, x)) {
			X509_free(x);
			break;
		}
	BIO_free(bio);
	ERR_clear_error();
	if (sk_X509_num(e->cas) == 0) {
		snprintf(err, errlen, "no PEM certificate in the CA file");
		goto fail;
	}
	buf_init(&b);
	if (est_certs_only(e->cas, &b) == -1) {
		buf_free(&b);
		snprintf(err, errlen, "cannot encode the CA certificates as PKCS#7");
		goto fail;
	}
	e->cacerts_len = b.len;
	if ((e->cacerts = buf_detach(&b, NULL)) == NULL)
		goto fail;
	return e;
fail:
	if (err[0] == '\0')
		snprintf(err, errlen, "out of memory");
	est_free(e);
	return NULL;
}

struct est *
est_new(const char *ca_pem_path, char *err, size_t errlen)
{
	struct est *e;
	char *text = NULL, why[256] = "";
	size_t len;

	if (errlen > 0)
		err[0] = '\0';
	if (file_read(ca_pem_path, 1024 * 1024, &text, &len) == -1) {
		snprintf(err, errlen, "cannot read %s: %s", ca_pem_path, strerror(errno));
		return NULL;
	}
	if ((e = est_new_mem(text, len, why, sizeof(why))) == NULL)
		snprintf(err, errlen, "%s: %s", ca_pem_path, why);
	free(text);
	if (e != NULL && ((e->live = calloc(1, sizeof(*e->live))) == NULL ||
	    (e->live->path = strdup(ca_pem_path)) == NULL)) {
		if (e->live)
			free(e->live);
		e->live = NULL;
		est_free(e);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (e != NULL) {
		pthread_mutex_init(&e->live->mu, NULL);
		if (stat(ca_pem_path, &e->live->st) == -1)
			memset(&e->live->st, 0, sizeof(e->live->st));
	}
	return e;
}

/* The /cacerts answer into resp, rebuilt first when the CA file changed (a file
 * that cannot be read or parsed keeps the previous answer). */
static void
est_cacerts(const struct est *e, struct est_response *resp)
{
	struct est_live *l = e->live;
	struct est *n;
	struct stat st;
	char *text = NULL, why[256];
	size_t len;

	if (l == NULL) {
		est_set_body(resp, EST_CT_P7, e->cacerts, e->cacerts_len);
		return;
	}
	pthread_mutex_lock(&l->mu);
	if (stat(l->path, &st) == 0 && (st.st_ino != l->st.st_ino || st.st_size != l->st.st_size ||
	    st.st_mtim.tv_sec != l->st.st_mtim.tv_sec ||
	    st.st_mtim.tv_nsec != l->st.st_mtim.tv_nsec)) {
		l->st = st;
		if (file_read(l->path, 1024 * 1024, &text, &len) == 0 &&
		    (n = est_new_mem(text, len, why, sizeof(why))) != NULL) {
			struct est *m = (struct est *)e;   /* the answer is e's mutable part */

			free(m->cacerts);
			m->cacerts = n->cacerts;
			m->cacerts_len = n->cacerts_len;
			n->cacerts = NULL;
			est_free(n);
		}
		free(text);
	}
	est_set_body(resp, EST_CT_P7, e->cacerts, e->cacerts_len);
	pthread_mutex_unlock(&l->mu);
}

void
est_free(struct est *e)
{
	if (e == NULL)
		return;
	sk_X509_pop_free(e->cas, X509_free);
	free(e->cacerts);
	if (e->live != NULL) {
		pthread_mutex_destroy(&e->live->mu);
		free(e->live->path);
		free(e->live);
	}
	free(e);
}

void
est_response_clear(struct est_response *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

void
est_call_clear(struct est_call *c)
{
	caproto_req_clear(&c->req);
	memset(c, 0, sizeof(*c));
}

/* ---- request parts ------------------------------------------------------------- */

/* 1 when the media type of ct (parameters ignored, RFC 9110 whitespace) is want. */
static int
est_media_is(const char *ct, const char *want)
{
	size_t n;

	if (ct == NULL)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	n = strcspn(ct, "; \t");
	return n == strlen(want) && strncasecmp(ct, want, n) == 0;
}

/* Copies a printable word (no space, quote, backslash, control) of 1..len-1 bytes. */
static int
est_word(const char *s, size_t n, char *out, size_t len)
{
	size_t i;

	if (n == 0 || n >= len)
		return -1;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '"' ||
		    s[i] == '\\')
			return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/* Authorization: "Basic base64(ID:TOKEN)" or "Bearer TOKEN". 0, or -1 with why. */
static int
est_auth(const char *h, struct caproto_req *req, const char **why)
{
	const char *p, *colon;
	struct buf b;
	size_t n;
	int rc = -1;

	*why = "an Authorization header (Basic base64(ID:TOKEN) or Bearer TOKEN) is required";
	if (h == NULL)
		return -1;
	while (*h == ' ' || *h == '\t')
		h++;
	for (p = h; *p && *p != ' ' && *p != '\t'; p++)
		;
	n = (size_t)(p - h);
	while (*p == ' ' || *p == '\t')
		p++;
	if (n == 6 && strncasecmp(h, "Bearer", 6) == 0) {
		if (est_word(p, strcspn(p, " \t"), req->token, sizeof(req->token)) == -1 ||
		    p[strcspn(p, " \t")] != '\0') {
			*why = "malformed Bearer token";
			return -1;
		}
		return 0;
	}
	if (n != 5 || strncasecmp(h, "Basic", 5) != 0) {
		*why = "unsupported Authorization scheme (use Basic or Bearer)";
		return -1;
	}
	buf_init(&b);
	n = strcspn(p, " \t");
	if (p[n] != '\0' || base64_decode(&b, p, n, 0) == -1 || b.len == 0 ||
	    memchr(b.p, '\0', b.len) != NULL || (colon = memchr(b.p, ':', b.len)) == NULL) {
		*why = "malformed Basic credentials (want base64 of ID:TOKEN)";
		goto out;
	}
	if (est_word(b.p, (size_t)(colon - b.p), req->agent, sizeof(req->agent)) == -1 ||
	    !certify_agent_id_valid(req->agent)) {
		req->agent[0] = '\0';
		*why = "the user name of the Basic credentials is not a valid agent id";
		goto out;
	}
	if (est_word(colon + 1, b.len - (size_t)(colon + 1 - b.p), req->token,
	    sizeof(req->token)) == -1) {
		*why = "malformed token in the Basic credentials";
		goto out;
	}
	rc = 0;
out:
	buf_wipe(&b);
	return rc;
}

/* The body as a DER PKCS#10 whose signature verifies and whose key is acceptable;
 * its SubjectPublicKeyInfo into req. 0, or -1 with a message in why. */
static int
est_csr(const struct est_request *r, struct caproto_req *req, char *why, size_t whylen)
{
	const unsigned char *p;
	unsigned char *spki = NULL;
	X509_REQ *csr = NULL;
	EVP_PKEY *k = NULL;
	struct buf der;
	char kerr[256];
	int n, rc = -1;

	buf_init(&der);
	if (!est_media_is(r->content_type, "application/pkcs10")) {
		snprintf(why, whylen, "Content-Type must be application/pkcs10");
		return -2;
	}
	/* RFC 7030 4.2.1: base64 DER; line breaks (and stray spaces) are tolerated. */
	if (r->body_len == 0 || base64_decode(&der, (const char *)r->body, r->body_len,
	    BASE64_WS) == -1 || der.len == 0) {
		snprintf(why, whylen, "the body is not base64 (RFC 7030: base64 of a DER PKCS#10)");
		goto out;
	}
	p = (const unsigned char *)der.p;
	if ((csr = d2i_X509_REQ(NULL, &p, (long)der.len)) == NULL ||
	    p != (const unsigned char *)der.p + der.len) {
		snprintf(why, whylen, "the body is not a DER PKCS#10 certification request");
		goto out;
	}
	if ((k = X509_REQ_get_pubkey(csr)) == NULL) {
		snprintf(why, whylen, "the request's public key cannot be read");
		goto out;
	}
	if (certify_key_acceptable(k, kerr, sizeof(kerr)) == -1) {
		snprintf(why, whylen, "%s", kerr);
		goto out;
	}
	if (X509_REQ_verify(csr, k) != 1) {
		snprintf(why, whylen, "the request's signature does not verify (no proof of "
		    "possession of the key)");
		goto out;
	}
	if ((n = i2d_PUBKEY(k, &spki)) <= 0 || n > CAPROTO_MAX_DER ||
	    (req->spki = malloc((size_t)n)) == NULL) {
		snprintf(why, whylen, "cannot encode the request's public key");
		goto out;
	}
	memcpy(req->spki, spki, (size_t)n);
	req->spki_len = (size_t)n;
	rc = 0;
out:
	ERR_clear_error();
	OPENSSL_free(spki);
	EVP_PKEY_free(k);
	X509_REQ_free(csr);
	buf_free(&der);
	return rc;
}

static void
est_peer(const struct est_request *r, struct caproto_req *req)
{
	if (r->peer != NULL && est_word(r->peer, strlen(r->peer), req->peer, sizeof(req->peer)) == -1)
		req->peer[0] = '\0';
}

/* The fields of an OCSP request (DER) into req. 0, or -1 (malformed). */
static int
est_ocsp_parse(const unsigned char *der, size_t len, struct caproto_req *req)
{
	const unsigned char *p = der;
	OCSP_REQUEST *o = NULL;
	ASN1_OCTET_STRING *nh, *kh, *nv;
	ASN1_OBJECT *md;
	ASN1_INTEGER *sn;
	X509_EXTENSION *ext;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	int i, n, nid, idx, rc = -1;

	if (len == 0 || (o = d2i_OCSP_REQUEST(NULL, &p, (long)len)) == NULL || p != der + len)
		goto out;
	n = OCSP_request_onereq_count(o);
	if (n < 1 || n > CAPROTO_MAX_IDS)
		goto out;
	for (i = 0; i < n; i++) {
		struct caproto_id *c = &req->ids[i];
		OCSP_CERTID *cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(o, i));

		if (cid == NULL || !OCSP_id_get0_info(&nh, &md, &kh, &sn, cid))
			goto out;
		nid = OBJ_obj2nid(md);
		if (nid != NID_sha1 && nid != NID_sha256 && nid != NID_sha384 && nid != NID_sha512)
			goto out;
		c->md_nid = nid;
		c->name_hash_len = (size_t)ASN1_STRING_length(nh);
		c->key_hash_len = (size_t)ASN1_STRING_length(kh);
		if (c->name_hash_len != (size_t)EVP_MD_get_size(EVP_get_digestbynid(nid)) ||
		    c->key_hash_len != c->name_hash_len)
			goto out;
		memcpy(c->name_hash, ASN1_STRING_get0_data(nh), c->name_hash_len);
		memcpy(c->key_hash, ASN1_STRING_get0_data(kh), c->key_hash_len);
		BN_free(bn);
		OPENSSL_free(hex);
		hex = NULL;
		if ((bn = ASN1_INTEGER_to_BN(sn, NULL)) == NULL || BN_is_negative(bn) ||
		    (hex = BN_bn2hex(bn)) == NULL || strlen(hex) > 64)
			goto out;
		snprintf(c->serial, sizeof(c->serial), "%s", hex);
		req->nids++;
	}
	if ((idx = OCSP_REQUEST_get_ext_by_NID(o, NID_id_pkix_OCSP_Nonce, -1)) >= 0) {
		if ((ext = OCSP_REQUEST_get_ext(o, idx)) == NULL ||
		    (nv = X509_EXTENSION_get_data(ext)) == NULL || ASN1_STRING_length(nv) <= 0 ||
		    ASN1_STRING_length(nv) > CAPROTO_MAX_NONCE)
			goto out;
		memcpy(req->nonce, ASN1_STRING_get0_data(nv), (size_t)ASN1_STRING_length(nv));
		req->nonce_len = (size_t)ASN1_STRING_length(nv);
		req->has_nonce = 1;
	}
	rc = 0;
out:
	ERR_clear_error();
	BN_free(bn);
	OPENSSL_free(hex);
	OCSP_REQUEST_free(o);
	return rc;
}

/* GET /ocsp/{url-encoded base64 of the DER} (RFC 6960 A.1). */
static int
est_ocsp_get(const char *path, struct buf *der)
{
	const char *s = path + 6;
	struct buf b64;
	int hi, lo, rc = -1;

	buf_init(&b64);
	for (; *s; s++) {
		if (*s == '%') {
			if (!isxdigit((unsigned char)s[1]) || !isxdigit((unsigned char)s[2]))
				goto out;
			hi = isdigit((unsigned char)s[1]) ? s[1] - '0' : (tolower((unsigned char)s[1]) - 'a' + 10);
			lo = isdigit((unsigned char)s[2]) ? s[2] - '0' : (tolower((unsigned char)s[2]) - 'a' + 10);
			buf_addc(&b64, (char)(hi << 4 | lo));
			s += 2;
		} else
			buf_addc(&b64, *s);
		if (b64.len > EST_MAX_BODY)
			goto out;
	}
	rc = b64.len > 0 && !buf_failed(&b64) && base64_decode(der, b64.p, b64.len, 0) == 0 &&
	    der->len > 0 ? 0 : -1;
out:
	buf_free(&b64);
	return rc;
}

/* ---- dispatch ------------------------------------------------------------------ */

static enum est_next
est_ocsp(const struct est_request *r, enum est_route route, struct est_response *resp,
    struct est_call *call)
{
	struct buf der;
	int ok;

	if (route == EST_R_OCSP_GET) {
		buf_init(&der);
		ok = est_ocsp_get(r->path, &der) == 0 &&
		    est_ocsp_parse((const unsigned char *)der.p, der.len, &call->req) == 0;
		buf_free(&der);
	} else {
		if (!est_media_is(r->content_type, "application/ocsp-request")) {
			est_text(resp, 415, "Content-Type must be application/ocsp-request");
			return EST_RESPOND;
		}
		ok = est_ocsp_parse(r->body, r->body_len, &call->req) == 0;
	}
	if (!ok) {
		caproto_req_clear(&call->req);
		memset(&call->req, 0, sizeof(call->req));
		est_ocsp_status(resp, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
		return EST_RESPOND;
	}
	call->op = EST_OP_OCSP;
	call->req.op = CAPROTO_OCSP;
	return EST_ASK_CA;
}

enum est_next
est_handle(const struct est *e, const struct est_request *r, struct est_response *resp,
    struct est_call *call)
{
	enum est_route route = est_route(r->path);
	const char *why;
	char msg[320];
	int get = r->method && strcmp(r->method, "GET") == 0;
	int post = r->method && strcmp(r->method, "POST") == 0;
	int rc;

	memset(resp, 0, sizeof(*resp));
	memset(call, 0, sizeof(*call));
	switch (route) {
	case EST_R_NONE:
	case EST_R_OTHER_EST:
		est_text(resp, 404, "not found");
		return EST_RESPOND;
	case EST_R_CACERTS:
		if (!get) {
			resp->allow = "GET";
			est_text(resp, 405, "cacerts takes GET");
			return EST_RESPOND;
		}
		resp->status = 200;
		est_cacerts(e, resp);
		return EST_RESPOND;
	case EST_R_OCSP_GET:
		if (!get) {
			resp->allow = "GET";
			est_text(resp, 405, "/ocsp/REQUEST takes GET");
			return EST_RESPOND;
		}
		return est_ocsp(r, route, resp, call);
	case EST_R_OCSP:
	case EST_R_ENROLL:
	case EST_R_REENROLL:
		break;
	}
	if (!post) {
		resp->allow = "POST";
		est_text(resp, 405, "%s takes POST", r->path);
		return EST_RESPOND;
	}
	if (r->body_len > EST_MAX_BODY) {
		est_text(resp, 413, "the body is larger than %d bytes", EST_MAX_BODY);
		return EST_RESPOND;
	}
	if (route == EST_R_OCSP)
		return est_ocsp(r, route, resp, call);
	if (route == EST_R_ENROLL) {
		if (est_auth(r->authorization, &call->req, &why) == -1) {
			resp->www_authenticate = EST_REALM;
			est_text(resp, 401, "%s", why);
			goto refused;
		}
		call->op = EST_OP_ENROLL;
		call->req.op = CAPROTO_ENROLL;
	} else {
		if (r->client_cert == NULL) {
			est_text(resp, 403, "simplereenroll is authenticated by the current "
			    "certificate: present it as the TLS client certificate");
			return EST_RESPOND;
		}
		call->op = EST_OP_REENROLL;
		call->req.op = CAPROTO_RENEW;
		if ((rc = i2d_X509(r->client_cert, NULL)) <= 0 || rc > CAPROTO_MAX_DER ||
		    (call->req.cert = malloc((size_t)rc)) == NULL) {
			ERR_clear_error();
			est_text(resp, 403, "the client certificate cannot be encoded");
			goto refused;
		}
		{
			unsigned char *q = call->req.cert;

			call->req.cert_len = (size_t)i2d_X509(r->client_cert, &q);
		}
	}
	if ((rc = est_csr(r, &call->req, msg, sizeof(msg))) != 0) {
		est_text(resp, rc == -2 ? 415 : 400, "%s", msg);
		goto refused;
	}
	est_peer(r, &call->req);
	return EST_ASK_CA;
refused:
	est_call_clear(call);
	return EST_RESPOND;
}

/* The CA's certificate must certify the key the CSR proved possession of. */
static X509 *
est_check_cert(const struct est_call *call, const struct caproto_reply *rep)
{
	const unsigned char *p = rep->cert;
	unsigned char *spki = NULL;
	X509 *x;
	int n;

	if ((x = d2i_X509(NULL, &p, (long)rep->cert_len)) == NULL || p != rep->cert + rep->cert_len)
		goto bad;
	if ((n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki)) <= 0 ||
	    (size_t)n != call->req.spki_len || memcmp(spki, call->req.spki, (size_t)n) != 0)
		goto bad;
	OPENSSL_free(spki);
	return x;
bad:
	ERR_clear_error();
	OPENSSL_free(spki);
	X509_free(x);
	return NULL;
}

void
est_reply(const struct est *e, const struct est_call *call, const struct caproto_reply *rep,
    struct est_response *resp)
{
	STACK_OF(X509) *certs = NULL;
	const unsigned char *p;
	struct buf b;
	X509 *x;
	size_t i;

	(void)e;
	memset(resp, 0, sizeof(*resp));
	if (call->op == EST_OP_OCSP) {
		if (rep->err == CAPROTO_OK && rep->ocsp != NULL) {
			resp->status = 200;
			est_set_body(resp, EST_CT_OCSP, rep->ocsp, rep->ocsp_len);
		} else
			est_ocsp_status(resp, rep->err == CAPROTO_E_UNAVAILABLE ?
			    OCSP_RESPONSE_STATUS_TRYLATER : rep->err == CAPROTO_E_BAD_REQUEST ?
			    OCSP_RESPONSE_STATUS_MALFORMEDREQUEST : OCSP_RESPONSE_STATUS_INTERNALERROR);
		return;
	}
	switch (rep->err) {
	case CAPROTO_OK:
		break;
	case CAPROTO_E_BAD_REQUEST:
		est_text(resp, 400, "%s", rep->message);
		return;
	case CAPROTO_E_UNAUTHORIZED:
		if (call->op == EST_OP_ENROLL)
			resp->www_authenticate = EST_REALM;
		est_text(resp, 401, "%s", rep->message);
		return;
	case CAPROTO_E_FORBIDDEN:
		est_text(resp, 403, "%s", rep->message);
		return;
	case CAPROTO_E_RATE_LIMITED:
		resp->retry_after = rep->retry_after > 0 ? rep->retry_after : 1;
		est_text(resp, 429, "%s", rep->message);
		return;
	case CAPROTO_E_UNAVAILABLE:
		resp->retry_after = EST_RETRY_S;
		est_text(resp, 503, "the CA service is not available; try again later");
		return;
	case CAPROTO_E_INTERNAL:
	default:
		est_text(resp, 500, "the CA failed to issue the certificate; see the CA "
		    "service's log");
		return;
	}
	if (rep->cert == NULL || (x = est_check_cert(call, rep)) == NULL) {
		est_text(resp, 502, "the CA service answered with a certificate for another key");
		return;
	}
	buf_init(&b);
	if ((certs = sk_X509_new_null()) == NULL || !sk_X509_push(certs, x)) {
		X509_free(x);
		goto oom;
	}
	for (i = 0; i < rep->nchain; i++) {
		p = rep->chain[i];
		if ((x = d2i_X509(NULL, &p, (long)rep->chain_len[i])) == NULL ||
		    !sk_X509_push(certs, x)) {
			X509_free(x);
			goto oom;
		}
	}
	if (est_certs_only(certs, &b) == -1)
		goto oom;
	resp->status = 200;
	est_set_body(resp, EST_CT_P7CERTS, b.p, b.len);
	goto out;
oom:
	ERR_clear_error();
	est_text(resp, 500, "cannot encode the certificate");
out:
	buf_free(&b);
	sk_X509_pop_free(certs, X509_free);
}
