/* EST over HTTPS and the enroll command (see include/agent_enroll.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "agent_dir.h"
#include "agent_enroll.h"
#include "agent_renew.h"
#include "agent_est.h"
#include "agent_key.h"
#include "agent_msg.h"
#include "agent_time.h"
#include "agent_token.h"
#include "agent_url.h"
#include "buf.h"
#include "log.h"

#define EST_CONNECT_TIMEOUT_MS 10000L
#define EST_TIMEOUT_MS         60000L
#define EST_MAX_PENDING_S      600     /* how long enroll waits on 202 answers */

struct agent_enroll_xfer {
	struct buf body;
	const volatile int *cancel;
	long retry_after;
};

static size_t
agent_enroll_body_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct agent_enroll_xfer *x = arg;

	if (buf_add(&x->body, p, size * nmemb) == -1)
		return 0;
	return size * nmemb;
}

static size_t
agent_enroll_hdr_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct agent_enroll_xfer *x = arg;
	size_t n = size * nmemb;

	if (n > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
		const char *v = p + 12;

		while (*v == ' ' || *v == '\t')
			v++;
		if (isdigit((unsigned char)*v))
			x->retry_after = strtol(v, NULL, 10);
	}
	return n;
}

static int
agent_enroll_progress_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
    curl_off_t un)
{
	struct agent_enroll_xfer *x = arg;

	return x->cancel != NULL && *x->cancel ? 1 : 0;
}

/* The first line of a body, printable ASCII only, for messages. */
static void
agent_enroll_snippet(const struct buf *b, char *out, size_t outlen)
{
	size_t i, o = 0;

	for (i = 0; i < b->len && o + 1 < outlen && o < 200; i++) {
		unsigned char c = (unsigned char)b->p[i];

		if (c == '\n' || c == '\r')
			break;
		out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[o] = '\0';
}

static CURL *
agent_enroll_easy(const char *url, struct agent_enroll_xfer *x, char *errbuf)
{
	CURL *e;

	if ((e = curl_easy_init()) == NULL)
		return NULL;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, EST_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, EST_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, agent_enroll_body_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, agent_enroll_hdr_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, agent_enroll_progress_cb);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "certgate-agent/" CERTGATE_VERSION);
	return e;
}

STACK_OF(X509) *
agent_enroll_cacerts_unverified(const char *origin, char *err, size_t errlen)
{
	struct agent_enroll_xfer x = { .retry_after = -1 };
	STACK_OF(X509) *certs = NULL;
	char url[1024], errbuf[CURL_ERROR_SIZE] = "", perr[300], snip[256];
	const char *ct = NULL;
	long status = 0;
	CURL *e;
	CURLcode rc;

	buf_init(&x.body);
	x.body.max = AGENT_EST_MAX_BODY;
	snprintf(url, sizeof(url), "%s/.well-known/est/cacerts", origin);
	if ((e = agent_enroll_easy(url, &x, errbuf)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* Nothing is trusted yet: the answer is checked against the token. */
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "GET %s: %s", url, errbuf[0] ? errbuf :
		    curl_easy_strerror(rc));
	} else if (status != 200) {
		agent_enroll_snippet(&x.body, snip, sizeof(snip));
		snprintf(err, errlen, "GET %s: HTTP %ld%s%s%s", url, status,
		    status == 404 ? " (is --url the gateway's enrollment listener, and does "
		    "it serve EST?)" : "", snip[0] ? ": " : "", snip);
	} else if (!agent_est_is_pkcs7(ct)) {
		snprintf(err, errlen, "GET %s: the answer is %s, not application/pkcs7-mime",
		    url, ct ? ct : "untyped");
	} else if ((certs = agent_est_certs(x.body.p, x.body.len, perr,
	    sizeof(perr))) == NULL) {
		snprintf(err, errlen, "GET %s: %s", url, perr);
	}
	curl_easy_cleanup(e);
	buf_free(&x.body);
	return certs;
}

/* Words for a refused EST request. */
static void
agent_enroll_refusal(const char *url, const char *op, long status, long retry_after,
    const struct buf *body, char *err, size_t errlen)
{
	char snip[256];
	const char *why;
	int enroll = strcmp(op, "simpleenroll") == 0;

	agent_enroll_snippet(body, snip, sizeof(snip));
	switch (status) {
	case 202:
		why = "the request waits for approval";
		break;
	case 400:
		why = "the gateway refused the certificate request";
		break;
	case 401:
		why = enroll ? "the enrollment token was refused: it is wrong, already "
		    "used or expired (ask for a new one: scripts/agent-token)" :
		    "the gateway wants a client certificate for renewal";
		break;
	case 403:
		why = enroll ? "enrollment is not allowed" : "the gateway refused to renew: "
		    "the current certificate is revoked, expired or not mapped to an agent";
		break;
	case 404:
		why = "no EST endpoint there (is --url the right listener, and does the "
		    "gateway serve EST?)";
		break;
	case 429:
		why = "rate-limited by the gateway";
		break;
	default:
		why = status >= 500 ? "the gateway failed" : "unexpected answer";
	}
	snprintf(err, errlen, "POST %s: HTTP %ld: %s%s%s%s", url, status, why,
	    retry_after >= 0 ? " (retry after the time it asks for)" : "",
	    snip[0] ? ": " : "", snip);
}

static void
agent_enroll_wipe_headers(struct curl_slist *l)
{
	for (; l != NULL; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
}

STACK_OF(X509) *
agent_enroll_post(const char *origin, const char *op, struct agent_cred *tls,
    const char *auth, const char *csr_b64, struct agent_enroll_answer *ans, char *err,
    size_t errlen, const volatile int *cancel)
{
	struct agent_enroll_xfer x = { .cancel = cancel, .retry_after = -1 };
	STACK_OF(X509) *certs = NULL;
	struct curl_slist *hdrs = NULL, *l;
	struct buf authh;
	char url[1024], errbuf[CURL_ERROR_SIZE] = "", perr[300];
	const char *ct = NULL;
	long code = 0;
	CURL *e = NULL;
	CURLcode rc;

	memset(ans, 0, sizeof(*ans));
	ans->retry_after = -1;
	buf_init(&x.body);
	buf_init(&authh);
	x.body.max = AGENT_EST_MAX_BODY;
	snprintf(url, sizeof(url), "%s/.well-known/est/%s", origin, op);
	if ((e = agent_enroll_easy(url, &x, errbuf)) == NULL)
		goto oom;
	if ((hdrs = curl_slist_append(NULL, "Content-Type: application/pkcs10")) == NULL)
		goto oom;
	if ((l = curl_slist_append(hdrs, "Accept: application/pkcs7-mime")) == NULL)
		goto oom;
	hdrs = l;
	if ((l = curl_slist_append(hdrs, "Expect:")) == NULL)
		goto oom;
	hdrs = l;
	if (auth != NULL) {
		buf_adds(&authh, "Authorization: ");
		buf_adds(&authh, auth);
		if (buf_failed(&authh) || (l = curl_slist_append(hdrs, authh.p)) == NULL)
			goto oom;
		hdrs = l;
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(csr_b64));
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, csr_b64);
	if (agent_cred_curl(e, tls) == -1) {
		snprintf(err, errlen, "libcurl cannot do TLS with certgate's credentials");
		goto done;
	}
	rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ct);
	ans->status = rc == CURLE_OK ? (int)code : 0;
	ans->retry_after = x.retry_after;
	ans->unmapped = ans->status == 403 && agent_msg_unmapped(x.body.p, x.body.len);
	if (rc == CURLE_ABORTED_BY_CALLBACK) {
		snprintf(err, errlen, "POST %s: cancelled", url);
	} else if (rc != CURLE_OK) {
		const char *m = errbuf[0] ? errbuf : curl_easy_strerror(rc);
		const char *hint = agent_cred_hint(m);
		curl_off_t hs = 0;

		if (*hint == '\0' && (rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
		    rc == CURLE_GOT_NOTHING) && curl_easy_getinfo(e,
		    CURLINFO_APPCONNECT_TIME_T, &hs) == CURLE_OK && hs > 0)
			hint = AGENT_CRED_CLOSED_HINT;

		snprintf(err, errlen, "POST %s: %s%s%s%s", url, m, *hint ? " (" : "", hint,
		    *hint ? ")" : "");
		ans->transient = rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_COULDNT_CONNECT ||
		    (*hint == '\0' && (rc == CURLE_GOT_NOTHING || rc == CURLE_SEND_ERROR ||
		    rc == CURLE_RECV_ERROR));
	} else if (ans->unmapped) {
		snprintf(err, errlen, "POST %s: HTTP 403: the gateway's identity map has no "
		    "agent for this certificate (an agent enrolled a moment ago is loaded "
		    "within seconds; else it was removed from agents.json)", url);
	} else if (code != 200) {
		agent_enroll_refusal(url, op, code, x.retry_after, &x.body, err, errlen);
	} else if (!agent_est_is_pkcs7(ct)) {
		snprintf(err, errlen, "POST %s: the answer is %s, not application/pkcs7-mime",
		    url, ct ? ct : "untyped");
	} else if ((certs = agent_est_certs(x.body.p, x.body.len, perr,
	    sizeof(perr))) == NULL) {
		snprintf(err, errlen, "POST %s: %s", url, perr);
	}
	goto done;
oom:
	snprintf(err, errlen, "out of memory");
done:
	agent_enroll_wipe_headers(hdrs);
	curl_slist_free_all(hdrs);
	if (e != NULL)
		curl_easy_cleanup(e);
	buf_wipe(&authh);
	buf_free(&x.body);
	return certs;
}

/* ------------------------------------------------------------------------- */
/* certgate agent enroll */

/* The root above c among certs (each step's signature verified, so only c's real
 * issuers qualify), or c when it is self-signed or none is found: a gateway whose CA
 * is an intermediate under a corporate root is verified up to that root. Takes c's
 * reference, returns one. */
static X509 *
agent_enroll_root_of(X509 *c, STACK_OF(X509) *certs)
{
	X509 *cur = c, *up;
	int i, guard;

	for (guard = 0; guard < sk_X509_num(certs) && X509_check_issued(cur, cur) != X509_V_OK;
	    guard++) {
		for (i = 0, up = NULL; i < sk_X509_num(certs) && up == NULL; i++) {
			X509 *x = sk_X509_value(certs, i);

			if (X509_check_issued(x, cur) == X509_V_OK &&
			    X509_verify(cur, X509_get0_pubkey(x)) == 1)
				up = x;
		}
		ERR_clear_error();
		if (up == NULL)
			break;
		cur = up;
	}
	if (cur == c || X509_check_issued(cur, cur) != X509_V_OK || X509_up_ref(cur) != 1)
		return c;
	X509_free(c);
	return cur;
}

/* The trust anchors: --ca FILE, or the certificate from /cacerts whose fingerprint
 * the token carries (its root, when it is an intermediate). */
static STACK_OF(X509) *
agent_enroll_anchors(struct agent_enroll_args *a, const char *origin,
    const unsigned char fp[AGENT_TOKEN_FP_LEN])
{
	STACK_OF(X509) *got, *anchors;
	char err[1200], hex[65];
	X509 *c;
	int i;

	agent_token_hex(fp, hex);
	if (a->ca_file != NULL) {
		if ((anchors = agent_dir_read_certs(a->ca_file)) == NULL)
			return NULL;
		if (agent_token_find(anchors, fp) < 0)
			log_warn("%s does not hold the CA the token names (SHA-256 %s); "
			    "trusting %s as told", a->ca_file, hex, a->ca_file);
		return anchors;
	}
	if ((got = agent_enroll_cacerts_unverified(origin, err, sizeof(err))) == NULL) {
		log_err("%s", err);
		return NULL;
	}
	if ((i = agent_token_find(got, fp)) < 0) {
		log_err("none of the %d certificate(s) %s sent as its CA has the SHA-256 "
		    "fingerprint in the token (%s): this is not the gateway the token was "
		    "made for, or someone is in between. Nothing was sent.",
		    sk_X509_num(got), origin, hex);
		sk_X509_pop_free(got, X509_free);
		return NULL;
	}
	c = sk_X509_delete(got, i);
	c = agent_enroll_root_of(c, got);
	sk_X509_pop_free(got, X509_free);
	if ((anchors = sk_X509_new_null()) == NULL || sk_X509_push(anchors, c) <= 0) {
		log_err("out of memory");
		X509_free(c);
		sk_X509_free(anchors);
		return NULL;
	}
	log_info("%s's CA matches the token's fingerprint %s", origin, hex);
	return anchors;
}

/* A number in [0, 1) that differs between agents (unseeded random() would not). */
static double
agent_enroll_jitter(void)
{
	unsigned int v = 0;

	if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
		return 0;
	return (double)v / 4294967296.0;
}

static STACK_OF(X509) *
agent_enroll_anchor_copy(STACK_OF(X509) *anchors)
{
	STACK_OF(X509) *c;
	int i;

	if ((c = sk_X509_new_null()) == NULL)
		return NULL;
	for (i = 0; i < sk_X509_num(anchors); i++) {
		X509 *x = sk_X509_value(anchors, i);

		if (X509_up_ref(x) != 1 || sk_X509_push(c, x) <= 0) {
			sk_X509_pop_free(c, X509_free);
			return NULL;
		}
	}
	return c;
}

int
agent_enroll_run(struct agent_enroll_args *a)
{
	unsigned char fp[AGENT_TOKEN_FP_LEN];
	STACK_OF(X509) *anchors = NULL, *certs = NULL, *chain = NULL, *tanchors;
	struct agent_cred *trust = NULL, *trust2;
	struct agent_url u = { 0 };
	struct buf csr, auth;
	EVP_PKEY *key = NULL;
	X509 *leaf = NULL;
	char err[1200], when[40];
	struct agent_enroll_answer ans;
	long waited = 0, delay;
	int rc = 1, has, tries = 0;

	buf_init(&csr);
	buf_init(&auth);
	if (agent_token_parse(a->token, fp, err, sizeof(err)) == -1) {
		log_err("%s", err);
		goto done;
	}
	if (agent_url_parse(a->url, &u, err, sizeof(err)) == -1) {
		log_err("--url %s", err);
		goto done;
	}
	if (a->key_uri != NULL && agent_key_check_uri(a->key_uri, err, sizeof(err)) == -1) {
		log_err("%s", err);
		goto done;
	}
	if ((has = agent_dir_has_cert(a->dir)) == -1)
		goto done;
	if (has && !a->force) {
		log_err("%s already holds a certificate (cert.pem): renew it with `certgate "
		    "agent renew`, or pass --force to replace it", a->dir);
		goto done;
	}
	if ((anchors = agent_enroll_anchors(a, u.origin, fp)) == NULL)
		goto done;
	if ((tanchors = agent_enroll_anchor_copy(anchors)) == NULL ||
	    (trust = agent_cred_new(NULL, NULL, NULL, NULL, tanchors)) == NULL)
		goto done;
	/* The key is made only once the server is known to be the right one. */
	if (a->key_uri != NULL) {
		if (agent_key_generate_token(a->key_uri, &key) == -1) {
			log_err("could not make the key in the token (see above); if the label "
			    "is taken, choose another object= or delete the old key");
			goto done;
		}
	} else if (agent_key_generate_file(&key) == -1)
		goto done;
	if (agent_est_csr(key, a->agent, NULL, &csr, err, sizeof(err)) == -1 ||
	    agent_est_basic(a->agent, a->token, &auth) == -1) {
		log_err("%s", buf_failed(&auth) ? "out of memory" : err);
		goto done;
	}
	/* Every attempt sends the same CSR (the same key): when an answer is lost (the
	 * gateway gave up waiting for the CA, which still issued), the CA hands the
	 * certificate for this key out again instead of refusing the spent token. */
	for (;;) {
		certs = agent_enroll_post(u.origin, "simpleenroll", trust, auth.p, csr.p,
		    &ans, err, sizeof(err), NULL);
		if (certs == NULL && (ans.status == 503 || (ans.status == 0 && ans.transient)) &&
		    tries < AGENT_EST_RETRIES) {
			tries++;
			delay = agent_est_retry_delay(tries, ans.retry_after,
			    agent_enroll_jitter());
			log_warn("%s; trying again with the same key in %ld s (%d of %d)", err,
			    delay, tries, AGENT_EST_RETRIES);
			sleep((unsigned)delay);
			continue;
		}
		if (certs != NULL || ans.status != 202 || waited >= EST_MAX_PENDING_S)
			break;
		if (ans.retry_after < 1 || ans.retry_after > 300)
			ans.retry_after = 30;
		log_info("enrollment waits for approval; asking again in %ld s",
		    ans.retry_after);
		sleep((unsigned)ans.retry_after);
		waited += ans.retry_after;
	}
	if (certs == NULL) {
		log_err("%s", err);
		goto done;
	}
	if (agent_est_leaf(certs, key, &leaf, &chain, err, sizeof(err)) == -1) {
		log_err("enrollment answer: %s", err);
		goto done;
	}
	if (agent_cred_verify_chain(leaf, chain, anchors, err, sizeof(err)) == -1) {
		STACK_OF(X509) *more = agent_renew_new_anchors(anchors, certs, leaf, chain);

		if (more == NULL || agent_cred_verify_chain(leaf, chain, more, err,
		    sizeof(err)) == -1) {
			sk_X509_pop_free(more, X509_free);
			log_err("the certificate the gateway issued does not verify against "
			    "the CA: %s", err);
			goto done;
		}
		log_info("the certificate is from the gateway's new CA root (CA rollover): "
		    "ca.pem holds %d trust anchor(s)", sk_X509_num(more));
		sk_X509_pop_free(anchors, X509_free);
		anchors = more;
	}
	if (agent_dir_commit(a->dir, leaf, chain, a->key_uri ? NULL : key, a->key_uri,
	    anchors) == -1)
		goto done;
	X509_up_ref(leaf);
	EVP_PKEY_up_ref(key);
	if ((tanchors = agent_enroll_anchor_copy(anchors)) == NULL) {
		X509_free(leaf);
		EVP_PKEY_free(key);
	} else if ((trust2 = agent_cred_new(leaf, NULL, key, a->key_uri,
	    tanchors)) != NULL) {
		printf("enrolled %s: certificate %s (serial %s), valid until %s, in "
		    "%s/cert.pem; key %s%s\n", a->agent, agent_cred_subject(trust2),
		    agent_cred_serial(trust2), agent_time_iso(agent_cred_not_after(trust2),
		    when, sizeof(when)), a->dir, a->key_uri ? "in the token: " : "in ",
		    a->key_uri ? a->key_uri : "key.pem (0600)");
		agent_cred_unref(trust2);
	}
	fflush(stdout);
	rc = 0;
done:
	if (a->token != NULL) {
		explicit_bzero(a->token, strlen(a->token));
		free(a->token);
		a->token = NULL;
	}
	buf_wipe(&auth);
	buf_free(&csr);
	agent_url_free(&u);
	agent_cred_unref(trust);
	sk_X509_pop_free(anchors, X509_free);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(chain, X509_free);
	X509_free(leaf);
	EVP_PKEY_free(key);
	return rc;
}
