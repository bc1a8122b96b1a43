/* est.c: EST and OCSP requests (table-driven, with CSRs and OCSP requests made by
 * openssl in tests/unit/data/est), and the mapping of the CA's replies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "base64.h"
#include "check.h"
#include "est.h"
#include "file.h"

static char datadir[1024];

static char *
fixture(const char *name, size_t *len)
{
	char path[1200], *p = NULL;
	size_t n = 0;

	snprintf(path, sizeof(path), "%s/%s", datadir, name);
	if (file_read(path, 1 << 20, &p, &n) == -1) {
		fprintf(stderr, "cannot read fixture %s\n", path);
		exit(1);
	}
	if (len)
		*len = n;
	return p;
}

static X509 *
fixture_cert(const char *name)
{
	char *pem = fixture(name, NULL);
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

	BIO_free(b);
	free(pem);
	return x;
}

static void
basic(char *out, size_t len, const char *user_pass)
{
	struct buf b;

	buf_init(&b);
	base64_encode(&b, user_pass, strlen(user_pass), 0, 0);
	snprintf(out, len, "Basic %s", buf_str(&b));
	buf_free(&b);
}

#define TOK "cg1.0000000000000000000000000000000000000000000000000000000000000000." \
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

struct est_case {
	const char *name;
	const char *method, *path, *ctype;
	const char *auth;          /* "basic:ID:TOKEN", "bearer", "none", or the literal value */
	const char *body;          /* fixture name, "" for empty, or "=literal" */
	int cert;                  /* present the client certificate */
	int status;                /* 0: must go to the CA */
	enum est_op op;
	const char *want;          /* substring of the body (status) */
};

static const struct est_case cases[] = {
	{ "cacerts", "GET", "/.well-known/est/cacerts", NULL, "none", "", 0, 200, 0, NULL },
	{ "cacerts POST", "POST", "/.well-known/est/cacerts", NULL, "none", "", 0, 405, 0, "GET" },
	{ "csrattrs", "GET", "/.well-known/est/csrattrs", NULL, "none", "", 0, 404, 0, NULL },
	{ "elsewhere", "GET", "/mcp", NULL, "none", "", 0, 404, 0, NULL },
	{ "enroll P-256 Basic", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "basic:bot1:" TOK, "p256.b64", 0, 0, EST_OP_ENROLL, NULL },
	{ "enroll P-384 Bearer", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "bearer", "p384.b64", 0, 0, EST_OP_ENROLL, NULL },
	{ "enroll RSA-2048, ctype params", "POST", "/.well-known/est/simpleenroll",
	    " Application/PKCS10 ; x=y", "basic:bot1:" TOK, "rsa2048.b64", 0, 0, EST_OP_ENROLL, NULL },
	{ "enroll bad signature", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "basic:bot1:" TOK, "badsig.b64", 0, 400, 0, "does not verify" },
	{ "enroll RSA-1024", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "basic:bot1:" TOK, "rsa1024.b64", 0, 400, 0, "at least 2048" },
	{ "enroll P-521", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "basic:bot1:" TOK, "p521.b64", 0, 400, 0, "secp521r1" },
	{ "enroll secp256k1", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "basic:bot1:" TOK, "k256.b64", 0, 400, 0, "secp256k1" },
	{ "enroll garbage base64", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "basic:bot1:" TOK, "=%%% not base64", 0, 400, 0, "not base64" },
	{ "enroll DER not base64", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "basic:bot1:" TOK, "p256.der", 0, 400, 0, "not base64" },
	{ "enroll base64 of junk", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "basic:bot1:" TOK, "=aGVsbG8gd29ybGQ=", 0, 400, 0, "not a DER PKCS#10" },
	{ "enroll empty body", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "basic:bot1:" TOK, "", 0, 400, 0, "not base64" },
	{ "enroll wrong ctype", "POST", "/.well-known/est/simpleenroll", "application/json",
	    "basic:bot1:" TOK, "p256.b64", 0, 415, 0, "application/pkcs10" },
	{ "enroll no ctype", "POST", "/.well-known/est/simpleenroll", NULL,
	    "basic:bot1:" TOK, "p256.b64", 0, 415, 0, NULL },
	{ "enroll no auth", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "none", "p256.b64", 0, 401, 0, "Authorization" },
	{ "enroll Digest", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "Digest username=x", "p256.b64", 0, 401, 0, "unsupported" },
	{ "enroll Basic bad base64", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "Basic ***", "p256.b64", 0, 401, 0, "malformed Basic" },
	{ "enroll Basic no colon", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "basic:nocolon", "p256.b64", 0, 401, 0, "malformed Basic" },
	{ "enroll Basic bad agent", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "basic:../x:" TOK, "p256.b64", 0, 401, 0, "agent id" },
	{ "enroll Basic empty token", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "basic:bot1:", "p256.b64", 0, 401, 0, "token" },
	{ "enroll Bearer two words", "POST", "/.well-known/est/simpleenroll", "application/pkcs10",
	    "Bearer a b", "p256.b64", 0, 401, 0, "Bearer" },
	{ "enroll GET", "GET", "/.well-known/est/simpleenroll", NULL, "none", "", 0, 405, 0, "POST" },
	{ "reenroll", "POST", "/.well-known/est/simplereenroll", "application/pkcs10", "none",
	    "p256.b64", 1, 0, EST_OP_REENROLL, NULL },
	{ "reenroll no cert", "POST", "/.well-known/est/simplereenroll", "application/pkcs10",
	    "none", "p256.b64", 0, 403, 0, "client certificate" },
	{ "reenroll weak key", "POST", "/.well-known/est/simplereenroll", "application/pkcs10",
	    "none", "rsa1024.b64", 1, 400, 0, "2048" },
	{ "ocsp with nonce", "POST", "/ocsp", "application/ocsp-request", "none",
	    "ocsp-nonce.der", 0, 0, EST_OP_OCSP, NULL },
	{ "ocsp sha256", "POST", "/ocsp", "application/ocsp-request", "none",
	    "ocsp-sha256.der", 0, 0, EST_OP_OCSP, NULL },
	{ "ocsp garbage", "POST", "/ocsp", "application/ocsp-request", "none", "=xyz", 0, 200, 0,
	    NULL },
	{ "ocsp ctype", "POST", "/ocsp", "text/plain", "none", "ocsp-nonce.der", 0, 415, 0, NULL },
	{ "ocsp GET garbage", "GET", "/ocsp/%zz", NULL, "none", "", 0, 200, 0, NULL },
	{ "ocsp PUT", "PUT", "/ocsp", NULL, "none", "", 0, 405, 0, "POST" },
};

static void
run_case(const struct est *e, X509 *client, const struct est_case *c)
{
	struct est_request r = { 0 };
	struct est_response resp;
	struct est_call call;
	char auth[512], *body = NULL;
	size_t blen = 0;
	enum est_next next;

	r.method = c->method;
	r.path = c->path;
	r.content_type = c->ctype;
	r.peer = "192.0.2.1";
	if (strncmp(c->auth, "basic:", 6) == 0) {
		basic(auth, sizeof(auth), c->auth + 6);
		r.authorization = auth;
	} else if (strcmp(c->auth, "bearer") == 0) {
		snprintf(auth, sizeof(auth), "Bearer  %s", TOK);
		r.authorization = auth;
	} else if (strcmp(c->auth, "none") != 0)
		r.authorization = c->auth;
	if (c->body[0] == '=') {
		r.body = (const unsigned char *)c->body + 1;
		r.body_len = strlen(c->body + 1);
	} else if (c->body[0]) {
		body = fixture(c->body, &blen);
		r.body = (const unsigned char *)body;
		r.body_len = blen;
	}
	r.client_cert = c->cert ? client : NULL;
	next = est_handle(e, &r, &resp, &call);
	if (c->status == 0) {
		if (next != EST_ASK_CA || call.op != c->op) {
			fprintf(stderr, "case '%s': got status %d (%.*s), want a CA request\n", c->name,
			    resp.status, (int)resp.body_len, resp.body ? resp.body : "");
			CHECK(0);
		} else
			CHECK(1);
		if (c->op == EST_OP_ENROLL) {
			CHECK_STR(call.req.token, TOK);
			CHECK(call.req.spki != NULL && call.req.spki_len > 50);
			CHECK_STR(call.req.peer, "192.0.2.1");
			CHECK_STR(call.req.agent, strcmp(c->auth, "bearer") ? "bot1" : "");
		}
		if (c->op == EST_OP_REENROLL)
			CHECK(call.req.cert != NULL && call.req.spki != NULL);
	} else {
		if (next != EST_RESPOND || resp.status != c->status ||
		    (c->want && (resp.body == NULL || strstr(resp.body, c->want) == NULL)) ||
		    (c->status == 405 && resp.allow == NULL) ||
		    (c->status == 401 && resp.www_authenticate == NULL)) {
			fprintf(stderr, "case '%s': got %s status %d (%.*s), want %d '%s'\n", c->name,
			    next == EST_ASK_CA ? "CA request" : "response", resp.status,
			    (int)resp.body_len, resp.body ? resp.body : "", c->status,
			    c->want ? c->want : "");
			CHECK(0);
		} else
			CHECK(1);
		if (c->status == 405)
			CHECK(c->want == NULL || strcmp(resp.allow, c->want) == 0);
	}
	est_response_clear(&resp);
	est_call_clear(&call);
	free(body);
}

/* The OCSP fields sent to the CA are those of the openssl-made request. */
static void
test_ocsp_fields(const struct est *e)
{
	struct est_request r = { .method = "POST", .path = "/ocsp",
	    .content_type = "application/ocsp-request" };
	struct est_response resp;
	struct est_call call;
	char *der;
	size_t len;

	der = fixture("ocsp-sha256.der", &len);
	r.body = (const unsigned char *)der;
	r.body_len = len;
	CHECK(est_handle(e, &r, &resp, &call) == EST_ASK_CA);
	CHECK(call.req.nids == 1 && call.req.ids[0].md_nid == NID_sha256);
	CHECK(call.req.ids[0].name_hash_len == 32 && call.req.ids[0].key_hash_len == 32);
	CHECK_STR(call.req.ids[0].serial, "1234");
	CHECK(!call.req.has_nonce);
	est_response_clear(&resp);
	est_call_clear(&call);
	free(der);
	der = fixture("ocsp-nonce.der", &len);
	r.body = (const unsigned char *)der;
	r.body_len = len;
	CHECK(est_handle(e, &r, &resp, &call) == EST_ASK_CA);
	CHECK(call.req.ids[0].md_nid == NID_sha1 && call.req.ids[0].name_hash_len == 20);
	CHECK(call.req.has_nonce && call.req.nonce_len == 18);	/* OCTET STRING of 16 */
	est_response_clear(&resp);
	est_call_clear(&call);
	free(der);
}

/* cacerts is base64 of a certs-only PKCS#7 holding the CA certificate. */
static void
test_cacerts(const struct est *e, X509 *ca)
{
	struct est_request r = { .method = "GET", .path = "/.well-known/est/cacerts" };
	struct est_response resp;
	struct est_call call;
	const unsigned char *p;
	struct buf der;
	PKCS7 *p7;

	CHECK(est_handle(e, &r, &resp, &call) == EST_RESPOND && resp.status == 200);
	CHECK_STR(resp.content_type, "application/pkcs7-mime");
	buf_init(&der);
	CHECK(base64_decode(&der, resp.body, resp.body_len, BASE64_WS) == 0);
	p = (const unsigned char *)der.p;
	p7 = d2i_PKCS7(NULL, &p, (long)der.len);
	CHECK(p7 != NULL && PKCS7_type_is_signed(p7));
	CHECK(p7 != NULL && sk_X509_num(p7->d.sign->cert) == 1 &&
	    X509_cmp(sk_X509_value(p7->d.sign->cert, 0), ca) == 0);
	/* Lines of 64 characters, as openssl base64 -d reads them. */
	CHECK(resp.body_len > 65 && resp.body[64] == '\n');
	PKCS7_free(p7);
	buf_free(&der);
	est_response_clear(&resp);
}

/* A certificate for key signed by a throw-away CA key. */
static X509 *
make_cert(EVP_PKEY *key)
{
	EVP_PKEY *ca = EVP_EC_gen("P-256");
	X509 *x = X509_new();

	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
	    (const unsigned char *)"bot1", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_sign(x, ca, EVP_sha256());
	EVP_PKEY_free(ca);
	return x;
}

static void
test_reply(const struct est *e)
{
	static const struct { enum caproto_err err; int status; int retry; } map[] = {
		{ CAPROTO_E_BAD_REQUEST, 400, 0 }, { CAPROTO_E_UNAUTHORIZED, 401, 0 },
		{ CAPROTO_E_FORBIDDEN, 403, 0 }, { CAPROTO_E_RATE_LIMITED, 429, 30 },
		{ CAPROTO_E_UNAVAILABLE, 503, 5 }, { CAPROTO_E_INTERNAL, 500, 0 },
	};
	struct est_request r = { .method = "POST", .path = "/.well-known/est/simpleenroll",
	    .content_type = "application/pkcs10" };
	struct caproto_reply rep;
	struct est_response resp;
	struct est_call call;
	const unsigned char *p;
	unsigned char *der = NULL;
	char auth[512], *body;
	EVP_PKEY *key, *other;
	X509 *x;
	size_t i, len;
	struct buf d;
	PKCS7 *p7;

	body = fixture("p256.b64", &len);
	basic(auth, sizeof(auth), "bot1:" TOK);
	r.authorization = auth;
	r.body = (const unsigned char *)body;
	r.body_len = len;
	CHECK(est_handle(e, &r, &resp, &call) == EST_ASK_CA);
	est_response_clear(&resp);
	p = call.req.spki;
	key = d2i_PUBKEY(NULL, &p, (long)call.req.spki_len);
	CHECK(key != NULL);
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		memset(&rep, 0, sizeof(rep));
		caproto_reply_error(&rep, map[i].err, "message %zu\x01", i);
		rep.retry_after = map[i].err == CAPROTO_E_RATE_LIMITED ? 30 : 0;
		est_reply(e, &call, &rep, &resp);
		CHECK(resp.status == map[i].status && resp.retry_after == map[i].retry);
		CHECK(map[i].status == 401 ? resp.www_authenticate != NULL : resp.www_authenticate == NULL);
		/* The CA's words reach the client for refusals, made printable. */
		if (map[i].status < 500)
			CHECK(resp.body && strstr(resp.body, "message") && !strchr(resp.body, '\x01'));
		est_response_clear(&resp);
	}
	/* Success: a certs-only PKCS#7 with the certificate. */
	x = make_cert(key);
	memset(&rep, 0, sizeof(rep));
	rep.cert_len = (size_t)i2d_X509(x, &der);
	rep.cert = der;
	est_reply(e, &call, &rep, &resp);
	CHECK(resp.status == 200);
	CHECK_STR(resp.content_type, "application/pkcs7-mime; smime-type=certs-only");
	buf_init(&d);
	CHECK(base64_decode(&d, resp.body, resp.body_len, BASE64_WS) == 0);
	p = (const unsigned char *)d.p;
	p7 = d2i_PKCS7(NULL, &p, (long)d.len);
	CHECK(p7 && sk_X509_num(p7->d.sign->cert) == 1 &&
	    X509_cmp(sk_X509_value(p7->d.sign->cert, 0), x) == 0);
	PKCS7_free(p7);
	buf_free(&d);
	est_response_clear(&resp);
	OPENSSL_free(der);
	X509_free(x);
	/* A certificate for another key than the CSR's is not passed on. */
	other = EVP_EC_gen("P-256");
	x = make_cert(other);
	der = NULL;
	rep.cert_len = (size_t)i2d_X509(x, &der);
	rep.cert = der;
	est_reply(e, &call, &rep, &resp);
	CHECK(resp.status == 502);
	est_response_clear(&resp);
	OPENSSL_free(der);
	X509_free(x);
	EVP_PKEY_free(other);
	EVP_PKEY_free(key);
	est_call_clear(&call);
	/* OCSP: the CA's DER, or an OCSP error status. */
	memset(&call, 0, sizeof(call));
	call.op = EST_OP_OCSP;
	memset(&rep, 0, sizeof(rep));
	rep.ocsp = (unsigned char *)"\x30\x03\x0a\x01\x00";
	rep.ocsp_len = 5;
	est_reply(e, &call, &rep, &resp);
	CHECK(resp.status == 200 && resp.body_len == 5 && memcmp(resp.body, rep.ocsp, 5) == 0);
	est_response_clear(&resp);
	caproto_reply_error(&rep, CAPROTO_E_UNAVAILABLE, "down");
	rep.ocsp = NULL;
	est_reply(e, &call, &rep, &resp);
	/* OCSPResponse { responseStatus tryLater (3) } */
	CHECK(resp.status == 200 && resp.body_len == 5 && memcmp(resp.body, "\x30\x03\x0a\x01\x03", 5) == 0);
	est_response_clear(&resp);
	free(body);
}

int
main(void)
{
	const char *src = getenv("CERTGATE_SOURCE_DIR");
	char err[512] = "", path[1200];
	struct est *e;
	X509 *client, *ca;
	size_t i;

	snprintf(datadir, sizeof(datadir), "%s/tests/unit/data/est", src ? src : ".");
	snprintf(path, sizeof(path), "%s/ca.pem", datadir);
	CHECK((e = est_new(path, err, sizeof(err))) != NULL);
	if (e == NULL) {
		fprintf(stderr, "est_new: %s\n", err);
		CHECK_DONE();
	}
	CHECK(est_new("/nonexistent", err, sizeof(err)) == NULL && strstr(err, "nonexistent"));
	CHECK(est_new_mem("no pem here", 11, err, sizeof(err)) == NULL);
	CHECK(est_path("/.well-known/est/cacerts") && est_path("/ocsp") && est_path("/ocsp/x"));
	CHECK(!est_path("/mcp") && !est_path("/ocspx"));
	client = fixture_cert("client.pem");
	ca = fixture_cert("ca.pem");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(e, client, &cases[i]);
	test_ocsp_fields(e);
	test_cacerts(e, ca);
	test_reply(e);
	X509_free(client);
	X509_free(ca);
	est_free(e);
	CHECK_DONE();
}
