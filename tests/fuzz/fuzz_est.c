/* Fuzz target: EST/OCSP request parsing (est_handle) and the mapping of CA replies.
 * Input: byte 0 picks the route and method, then "AUTHORIZATION\nCONTENT-TYPE\nBODY".
 * Invariant: whatever est_handle decides to send, the CA service's decoder accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "caproto.h"
#include "est.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct est *fz_est;
static X509 *fz_cert;

static void
fz_init(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	char *pem;
	long n;
	BIO *b;
	char err[256];

	fz_cert = X509_new();
	X509_set_version(fz_cert, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(fz_cert), 1);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(fz_cert), "CN", MBSTRING_UTF8,
	    (const unsigned char *)"fuzz", -1, -1, 0);
	X509_set_issuer_name(fz_cert, X509_get_subject_name(fz_cert));
	X509_gmtime_adj(X509_getm_notBefore(fz_cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(fz_cert), 86400);
	X509_set_pubkey(fz_cert, k);
	X509_sign(fz_cert, k, EVP_sha256());
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, fz_cert);
	n = BIO_get_mem_data(b, &pem);
	if ((fz_est = est_new_mem(pem, (size_t)n, err, sizeof(err))) == NULL)
		abort();
	BIO_free(b);
	EVP_PKEY_free(k);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const paths[] = { "/.well-known/est/cacerts",
	    "/.well-known/est/simpleenroll", "/.well-known/est/simplereenroll", "/ocsp",
	    "/.well-known/est/csrattrs" };
	struct est_request r = { 0 };
	struct est_response resp;
	struct est_call call;
	struct caproto_reply rep;
	struct caproto_req back;
	char *auth = NULL, *ct = NULL, *path = NULL, err[256];
	const char *p, *end, *nl;
	struct buf b;
	int sel;

	if (fz_est == NULL)
		fz_init();
	if (size < 1)
		return 0;
	sel = data[0];
	p = (const char *)data + 1;
	end = (const char *)data + size;
	r.method = (sel & 0x80) ? "GET" : "POST";
	if ((sel & 7) < 5)
		r.path = paths[sel & 7];
	else {
		/* GET /ocsp/<rest of the input as the URL-encoded request> */
		if ((path = malloc((size_t)(end - p) + 7)) == NULL)
			return 0;
		memcpy(path, "/ocsp/", 6);
		memcpy(path + 6, p, (size_t)(end - p));
		path[6 + (end - p)] = '\0';
		r.path = path;
		r.method = "GET";
	}
	if ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		auth = strndup(p, (size_t)(nl - p));
		p = nl + 1;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
			ct = strndup(p, (size_t)(nl - p));
			p = nl + 1;
		}
	}
	r.authorization = (sel & 0x10) ? auth : NULL;
	r.content_type = (sel & 0x20) ? ct : (sel & 3) == 3 ? "application/ocsp-request" :
	    "application/pkcs10";
	r.body = (const unsigned char *)p;
	r.body_len = (size_t)(end - p);
	r.client_cert = (sel & 0x40) ? fz_cert : NULL;
	r.peer = "192.0.2.1";
	if (est_handle(fz_est, &r, &resp, &call) == EST_ASK_CA) {
		buf_init(&b);
		if (caproto_req_encode(&call.req, &b, err, sizeof(err)) == -1 ||
		    caproto_req_decode(b.p + 4, b.len - 4, &back, err, sizeof(err)) == -1 ||
		    back.op != call.req.op)
			abort();
		caproto_req_clear(&back);
		buf_free(&b);
		memset(&rep, 0, sizeof(rep));
		caproto_reply_error(&rep, (enum caproto_err)(1 + size % 6), "fuzz");
		est_response_clear(&resp);
		est_reply(fz_est, &call, &rep, &resp);
		if (resp.status < 200 || resp.status > 599)
			abort();
	} else if (resp.status < 200 || resp.status > 599 || (resp.body == NULL && resp.body_len))
		abort();
	est_response_clear(&resp);
	est_call_clear(&call);
	free(auth);
	free(ct);
	free(path);
	return 0;
}
