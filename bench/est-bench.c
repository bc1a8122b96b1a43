/*
 * est-bench: EST enrollment and renewal load generator (blocking OpenSSL, one thread
 * per concurrent request) with a keep-alive latency probe on the mTLS listener.
 *
 * Phases, one after the other, against a running gateway:
 *   0. cacerts: one GET /.well-known/est/cacerts per agent on a new connection at
 *      --concurrency: the same TLS handshake as an enrollment without the CA service,
 *      the floor the EST latencies stand on (the peer in the same run);
 *   1. enroll: every (agent, token) line of --tokens does POST
 *      /.well-known/est/simpleenroll on the enrollment listener (Basic auth, a fresh
 *      P-256 CSR made before the clock starts), --concurrency requests in flight;
 *   2. settle: waits until the gateway has loaded the new agents (admin /metrics
 *      gauge identity_map_agents, --admin), since renewals go over mTLS;
 *   3. probe alone: --probe-conns keep-alive connections send MCP tools/call at
 *      --probe-rate in total (open loop: latency from the scheduled send time, so a
 *      stalled gateway is charged for the requests it delayed) for --baseline s;
 *   4. renew: every enrolled agent does POST /.well-known/est/simplereenroll on the
 *      mTLS listener with its new certificate as client certificate and a new key,
 *      at --concurrency, while the probe keeps running.
 * A request's latency is connect + TLS handshake + request + complete answer (a new
 * connection per request, as an agent does). Each agent connects from its own
 * loopback address (127.1.X.Y), as agents on their own hosts would, so the gateway's
 * per-address enrollment limit does not turn the benchmark into 429s.
 *
 * Checks: every answer is 200 with a certs-only PKCS#7 holding a certificate for the
 * CSR's key and CN=AGENT; no serial appears twice among the answers; with --db, no
 * serial appears twice in the CA database (index.txt) and every serial answered is in
 * it. Exit status 0 only if everything was issued, nothing failed, no duplicate.
 *
 * Not a certgate component: it links no certgate code, so it is one file (~1000 lines,
 * like certgate-bench.c) rather than borrowing the tree's buffers and parsers. Threads share only the
 * atomic work counter, the per-index result slots (each written by one thread) and
 * the probe's per-thread sample arrays (read after join).
 */
#include <sys/socket.h>
#include <sys/time.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define EB_MAX_RESP	(256 * 1024)
#define EB_IO_TIMEOUT_S	30

struct opts {
	const char *enroll_host, *mtls_host, *admin_host, *servername, *ca, *tokens, *db;
	const char *probe_cert, *probe_key, *path;
	int enroll_port, mtls_port, admin_port, concurrency, probe_conns, json;
	double probe_rate, baseline, settle_max;
	long expect_agents;
};
static struct opts o = {
	.servername = "localhost", .path = "/mcp", .concurrency = 50, .probe_conns = 4,
	.probe_rate = 200, .baseline = 10, .settle_max = 60, .expect_agents = -1,
};

struct agent {
	char *id, *token;
	EVP_PKEY *key, *key2;           /* enrollment key, renewal key */
	char *csr, *csr2;               /* base64 DER CSRs */
	X509 *cert, *cert2;             /* issued, renewed */
	char serial[80], serial2[80];
	double lat0, lat, lat2;         /* seconds (cacerts, enroll, renew); < 0: failed */
	char err0[160], err[160], err2[160];
};

static struct agent *agents;
static size_t nagents;
static SSL_CTX *g_ctx;
static atomic_size_t g_next;
static int g_phase;                     /* 0 cacerts, 1 enroll, 2 renew */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "est-bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static void
parse_hostport(const char *s, const char **host, int *port)
{
	const char *c = strrchr(s, ':');
	char *h;

	if (c == NULL || c == s || atoi(c + 1) <= 0)
		die("want HOST:PORT, got '%s'", s);
	if ((h = strndup(s, (size_t)(c - s))) == NULL)
		die("out of memory");
	*host = h;
	*port = atoi(c + 1);
}

/* ---- keys and CSRs (before any clock starts) ---- */

static char *
b64(const unsigned char *p, int n)
{
	char *out = malloc((size_t)(4 * ((n + 2) / 3) + 1));

	if (out == NULL)
		die("out of memory");
	EVP_EncodeBlock((unsigned char *)out, p, n);
	return out;
}

static char *
make_csr(const char *cn, EVP_PKEY **keyp)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509_REQ *r = X509_REQ_new();
	X509_NAME *n = X509_NAME_new();
	unsigned char *der = NULL;
	char *out;
	int len;

	if (k == NULL || r == NULL || n == NULL ||
	    !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
	    -1, 0) || !X509_REQ_set_subject_name(r, n) || !X509_REQ_set_pubkey(r, k) ||
	    !X509_REQ_sign(r, k, EVP_sha256()) || (len = i2d_X509_REQ(r, &der)) <= 0)
		die("cannot make a CSR");
	out = b64(der, len);
	OPENSSL_free(der);
	X509_NAME_free(n);
	X509_REQ_free(r);
	*keyp = k;
	return out;
}

/* ---- one HTTPS exchange on a blocking socket ---- */

struct conn {
	int fd;
	SSL *ssl;
};

static void
conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	if (c->fd >= 0)
		close(c->fd);
	c->ssl = NULL;
	c->fd = -1;
}

/* Connects from src (NULL: any) and handshakes. Returns 0 or -1 with err set. */
static int
conn_open(struct conn *c, const char *host, int port, const char *src, X509 *cert,
    EVP_PKEY *key, char *err, size_t errlen)
{
	struct sockaddr_in sa, la;
	struct timeval tv = { EB_IO_TIMEOUT_S, 0 };
	int one = 1;

	c->ssl = NULL;
	if ((c->fd = socket(AF_INET, SOCK_STREAM, 0)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (src != NULL) {
		memset(&la, 0, sizeof(la));
		la.sin_family = AF_INET;
		inet_pton(AF_INET, src, &la.sin_addr);
		if (bind(c->fd, (struct sockaddr *)&la, sizeof(la)) == -1) {
			snprintf(err, errlen, "bind %s: %s", src, strerror(errno));
			goto fail;
		}
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		snprintf(err, errlen, "not an IPv4 address: %s", host);
		goto fail;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		snprintf(err, errlen, "connect: %s", strerror(errno));
		goto fail;
	}
	if ((c->ssl = SSL_new(g_ctx)) == NULL)
		goto tlsfail;
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_tlsext_host_name(c->ssl, o.servername);
	SSL_set1_host(c->ssl, o.servername);
	if (cert != NULL && (SSL_use_certificate(c->ssl, cert) != 1 ||
	    SSL_use_PrivateKey(c->ssl, key) != 1))
		goto tlsfail;
	if (SSL_connect(c->ssl) != 1)
		goto tlsfail;
	return 0;
tlsfail:
	snprintf(err, errlen, "TLS: %s", ERR_error_string(ERR_get_error(), NULL));
	ERR_clear_error();
fail:
	conn_close(c);
	return -1;
}

static int
conn_write(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		int w = SSL_write(c->ssl, p, (int)n);

		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Reads one HTTP/1.1 answer (Content-Length or chunked). buf holds EB_MAX_RESP bytes;
 * on success *status, the body in buf[*body_off .. *body_off + *body_len].
 */
static int
conn_read_answer(struct conn *c, char *buf, int *status, size_t *body_off, size_t *body_len)
{
	size_t have = 0, hlen, clen = 0, need;
	char *e, *p;
	int chunked = 0, r;

	for (;;) {
		if (have >= EB_MAX_RESP - 1)
			return -1;
		if ((r = SSL_read(c->ssl, buf + have, (int)(EB_MAX_RESP - 1 - have))) <= 0)
			return -1;
		have += (size_t)r;
		buf[have] = '\0';
		if ((e = strstr(buf, "\r\n\r\n")) != NULL)
			break;
	}
	hlen = (size_t)(e - buf) + 4;
	if (sscanf(buf, "HTTP/1.%*d %d", status) != 1)
		return -1;
	for (p = strstr(buf, "\r\n"); p != NULL && p < e; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, "content-length:", 15) == 0)
			clen = strtoul(p + 17, NULL, 10);
		else if (strncasecmp(p + 2, "transfer-encoding:", 18) == 0 &&
		    strstr(p + 20, "chunked") != NULL)
			chunked = 1;
	}
	if (!chunked) {
		need = hlen + clen;
		if (need >= EB_MAX_RESP)
			return -1;
		while (have < need) {
			if ((r = SSL_read(c->ssl, buf + have, (int)(need - have))) <= 0)
				return -1;
			have += (size_t)r;
		}
		*body_off = hlen;
		*body_len = clen;
		return 0;
	}
	/* Chunked: read until the terminating "0\r\n\r\n"; the body is not decoded
	 * (only the probe gets chunked answers, and it only needs the status). */
	for (;;) {
		buf[have] = '\0';
		if (have >= hlen + 5 && strstr(buf + hlen, "0\r\n\r\n") != NULL)
			break;
		if (have >= EB_MAX_RESP - 1)
			return -1;
		if ((r = SSL_read(c->ssl, buf + have, (int)(EB_MAX_RESP - 1 - have))) <= 0)
			return -1;
		have += (size_t)r;
	}
	*body_off = hlen;
	*body_len = have - hlen;
	return 0;
}

/* ---- the answer of an EST request ---- */

static int
parse_certs_only(const char *body, size_t len, const char *agent, EVP_PKEY *want, X509 **out,
    char serial[80], char *err, size_t errlen)
{
	unsigned char *der = malloc(len + 4);
	const unsigned char *p;
	char *clean = malloc(len + 1), cn[256];
	PKCS7 *p7 = NULL;
	STACK_OF(X509) *certs;
	X509 *x;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	size_t i, n = 0;
	int dlen, rc = -1;

	if (der == NULL || clean == NULL)
		goto fail;
	for (i = 0; i < len; i++)
		if (body[i] != '\r' && body[i] != '\n' && body[i] != ' ')
			clean[n++] = body[i];
	if (n == 0 || n % 4 != 0 || (dlen = EVP_DecodeBlock(der, (unsigned char *)clean,
	    (int)n)) < 0) {
		snprintf(err, errlen, "the answer is not base64");
		goto fail;
	}
	dlen -= (n >= 1 && clean[n - 1] == '=') + (n >= 2 && clean[n - 2] == '=');
	p = der;
	if ((p7 = d2i_PKCS7(NULL, &p, dlen)) == NULL || !PKCS7_type_is_signed(p7) ||
	    (certs = p7->d.sign->cert) == NULL || sk_X509_num(certs) != 1) {
		snprintf(err, errlen, "the answer is not a certs-only PKCS#7 with one certificate");
		goto fail;
	}
	x = sk_X509_value(certs, 0);
	if (EVP_PKEY_eq(X509_get0_pubkey(x), want) != 1) {
		snprintf(err, errlen, "the certificate is not for the CSR's key");
		goto fail;
	}
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
	    sizeof(cn)) <= 0 || strcmp(cn, agent) != 0) {
		snprintf(err, errlen, "the certificate is not for CN=%s", agent);
		goto fail;
	}
	if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL)) == NULL ||
	    (hex = BN_bn2hex(bn)) == NULL || strlen(hex) >= 80)
		goto fail;
	snprintf(serial, 80, "%s", hex);
	X509_up_ref(x);
	*out = x;
	rc = 0;
fail:
	if (rc == -1 && err[0] == '\0')
		snprintf(err, errlen, "cannot read the certificate");
	OPENSSL_free(hex);
	BN_free(bn);
	PKCS7_free(p7);
	free(der);
	free(clean);
	return rc;
}

/* ---- the enroll and renew workers ---- */

static void
agent_addr(size_t i, char out[32])
{
	snprintf(out, 32, "127.1.%zu.%zu", i / 250, i % 250 + 1);
}

/* Phase 0: GET cacerts on a new connection, the same handshake as an enrollment but
 * no CA service work: the floor an enrollment's latency stands on. */
static void
cacerts_one(struct agent *a, size_t i, char *buf)
{
	char src[32], req[512];
	struct conn c = { -1, NULL };
	size_t off = 0, blen = 0;
	double t0;
	int status = 0, n;

	a->lat0 = -1;
	agent_addr(i, src);
	n = snprintf(req, sizeof(req), "GET /.well-known/est/cacerts HTTP/1.1\r\nHost: %s\r\n"
	    "Connection: close\r\n\r\n", o.servername);
	t0 = now_s();
	if (conn_open(&c, o.enroll_host, o.enroll_port, src, NULL, NULL, a->err0,
	    sizeof(a->err0)) == -1)
		return;
	if (conn_write(&c, req, (size_t)n) == -1 ||
	    conn_read_answer(&c, buf, &status, &off, &blen) == -1 || status != 200) {
		snprintf(a->err0, sizeof(a->err0), "cacerts: status %d or connection failed", status);
		conn_close(&c);
		return;
	}
	a->lat0 = now_s() - t0;
	conn_close(&c);
}

static void
est_one(struct agent *a, size_t i, int renew, char *buf)
{
	char src[32], req[8192], auth[1024], cred[512], *err = renew ? a->err2 : a->err;
	size_t errlen = sizeof(a->err), off = 0, blen = 0, csrlen;
	struct conn c = { -1, NULL };
	const char *csr = renew ? a->csr2 : a->csr;
	double t0, *lat = renew ? &a->lat2 : &a->lat;
	int status = 0, n;

	*lat = -1;
	agent_addr(i, src);
	csrlen = strlen(csr);
	if (renew) {
		auth[0] = '\0';
	} else {
		n = snprintf(cred, sizeof(cred), "%s:%s", a->id, a->token);
		if (n <= 0 || (size_t)n >= sizeof(cred) || 4 * ((n + 2) / 3) + 40 >= (int)sizeof(auth))
			die("token too long");
		memcpy(auth, "Authorization: Basic ", 21);
		EVP_EncodeBlock((unsigned char *)auth + 21, (unsigned char *)cred, n);
		strcat(auth, "\r\n");
	}
	n = snprintf(req, sizeof(req), "POST /.well-known/est/%s HTTP/1.1\r\nHost: %s\r\n%s"
	    "Content-Type: application/pkcs10\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	    renew ? "simplereenroll" : "simpleenroll", o.servername, auth, csrlen);
	if (n <= 0 || (size_t)n + csrlen >= sizeof(req))
		die("request too long");
	memcpy(req + n, csr, csrlen);
	t0 = now_s();
	if (conn_open(&c, renew ? o.mtls_host : o.enroll_host, renew ? o.mtls_port : o.enroll_port,
	    src, renew ? a->cert : NULL, renew ? a->key : NULL, err, errlen) == -1)
		return;
	if (conn_write(&c, req, (size_t)n + csrlen) == -1 ||
	    conn_read_answer(&c, buf, &status, &off, &blen) == -1) {
		snprintf(err, errlen, "connection failed before the whole answer");
		conn_close(&c);
		return;
	}
	*lat = now_s() - t0;
	conn_close(&c);
	if (status != 200) {
		buf[off + (blen < 100 ? blen : 100)] = '\0';
		snprintf(err, errlen, "HTTP %d: %s", status, buf + off);
		*lat = -1;
		return;
	}
	if (parse_certs_only(buf + off, blen, a->id, renew ? a->key2 : a->key,
	    renew ? &a->cert2 : &a->cert, renew ? a->serial2 : a->serial, err, errlen) == -1)
		*lat = -1;
}

static void *
est_worker(void *arg)
{
	char *buf = malloc(EB_MAX_RESP);
	size_t i;

	(void)arg;
	if (buf == NULL)
		die("out of memory");
	while ((i = atomic_fetch_add(&g_next, 1)) < nagents) {
		struct agent *a = &agents[i];

		if (g_phase == 0) {
			cacerts_one(a, i, buf);
			continue;
		}
		if (g_phase == 2 && a->cert == NULL) {
			a->lat2 = -1;
			snprintf(a->err2, sizeof(a->err2), "not enrolled");
			continue;
		}
		est_one(a, i, g_phase == 2, buf);
	}
	free(buf);
	return NULL;
}

struct phase_result {
	double secs, p50, p90, p99, max, rate;
	size_t ok, errors;
};

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
pct(const double *v, size_t n, double q)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(q * (double)n + 0.999999);
	if (i < 1)
		i = 1;
	return v[(i > n ? n : i) - 1];
}

static void
summarize(double *v, size_t n, double secs, struct phase_result *r)
{
	qsort(v, n, sizeof(*v), cmp_double);
	r->secs = secs;
	r->ok = n;
	r->p50 = pct(v, n, 0.50) * 1e3;
	r->p90 = pct(v, n, 0.90) * 1e3;
	r->p99 = pct(v, n, 0.99) * 1e3;
	r->max = n ? v[n - 1] * 1e3 : 0;
	r->rate = secs > 0 ? (double)n / secs : 0;
}

static void
run_phase(int phase, struct phase_result *r)
{
	pthread_t *th = calloc((size_t)o.concurrency, sizeof(*th));
	double t0, *v = calloc(nagents + 1, sizeof(double));
	size_t i, n = 0, shown = 0;
	int k;

	if (th == NULL || v == NULL)
		die("out of memory");
	g_phase = phase;
	atomic_store(&g_next, 0);
	t0 = now_s();
	for (k = 0; k < o.concurrency; k++)
		if (pthread_create(&th[k], NULL, est_worker, NULL) != 0)
			die("pthread_create failed");
	for (k = 0; k < o.concurrency; k++)
		pthread_join(th[k], NULL);
	memset(r, 0, sizeof(*r));
	for (i = 0; i < nagents; i++) {
		static const char *const names[] = { "cacerts", "enroll", "renew" };
		double l = phase == 0 ? agents[i].lat0 : phase == 1 ? agents[i].lat : agents[i].lat2;

		if (l >= 0) {
			v[n++] = l;
		} else {
			r->errors++;
			if (shown++ < 5)
				fprintf(stderr, "est-bench: %s %s: %s\n", names[phase], agents[i].id,
				    phase == 0 ? agents[i].err0 : phase == 1 ? agents[i].err :
				    agents[i].err2);
		}
	}
	summarize(v, n, now_s() - t0, r);
	r->errors = nagents - n;
	free(v);
	free(th);
}

/* ---- settle: the gateway has loaded the enrolled agents ---- */

static long
admin_agents(void)
{
	struct sockaddr_in sa;
	char buf[1 << 16], *p;
	const char *req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
	struct timeval tv = { 5, 0 };
	size_t have = 0;
	ssize_t r;
	long v = -1;
	int fd;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)o.admin_port);
	inet_pton(AF_INET, o.admin_host, &sa.sin_addr);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(fd);
		return -1;
	}
	while (have < sizeof(buf) - 1 && (r = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0)
		have += (size_t)r;
	close(fd);
	buf[have] = '\0';
	for (p = buf; (p = strstr(p, "identity_map_agents ")) != NULL; p++)
		if (p > buf && p[-1] == '_' && (p - 1 == buf || p[-2] != '#'))
			v = strtol(p + 20, NULL, 10);
	return v;
}

static int
settle(void)
{
	double t0 = now_s();
	long v = -1;

	if (o.admin_host == NULL)
		return 0;
	while (now_s() - t0 < o.settle_max) {
		if ((v = admin_agents()) >= o.expect_agents)
			return 0;
		usleep(200 * 1000);
	}
	fprintf(stderr, "est-bench: the gateway has %ld agents in its identity map after %.0f s, "
	    "want %ld\n", v, o.settle_max, o.expect_agents);
	return -1;
}

/* ---- the keep-alive probe ---- */

struct probe {
	pthread_t th;
	int idx;
	X509 *cert;
	EVP_PKEY *key;
	double *v;              /* latencies of the window being recorded */
	size_t n, cap;
	size_t errors;
	char err[160];
};
static struct probe *probes;
static atomic_int probe_stop, probe_window; /* window: 0 not recording, 1 recording */

static void
probe_add(struct probe *p, double l)
{
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 4096;
		if ((p->v = realloc(p->v, p->cap * sizeof(double))) == NULL)
			die("out of memory");
	}
	p->v[p->n++] = l;
}

static void *
probe_run(void *arg)
{
	struct probe *p = arg;
	struct conn c = { -1, NULL };
	char *buf = malloc(EB_MAX_RESP), req[1024], body[256];
	double interval = o.probe_conns / o.probe_rate, next, t;
	size_t off, blen;
	long id = 0;
	int status, n, bn;

	if (buf == NULL)
		die("out of memory");
	/* Spread the connections' schedules over one interval. */
	next = now_s() + interval * p->idx / o.probe_conns;
	while (!atomic_load(&probe_stop)) {
		if (c.ssl == NULL && conn_open(&c, o.mtls_host, o.mtls_port, NULL, p->cert, p->key,
		    p->err, sizeof(p->err)) == -1) {
			if (atomic_load(&probe_window))
				p->errors++;
			usleep(100 * 1000);
			next = now_s();
			continue;
		}
		t = now_s();
		if (t < next)
			usleep((useconds_t)((next - t) * 1e6));
		bn = snprintf(body, sizeof(body), "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":"
		    "\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":"
		    "\"hello\"}}}", ++id);
		n = snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: %s\r\n"
		    "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
		    "Content-Length: %d\r\n\r\n%s", o.path, o.servername, bn, body);
		if (conn_write(&c, req, (size_t)n) == -1 ||
		    conn_read_answer(&c, buf, &status, &off, &blen) == -1 || status / 100 != 2) {
			if (atomic_load(&probe_window)) {
				p->errors++;
				snprintf(p->err, sizeof(p->err), "request failed (status %d)", status);
			}
			conn_close(&c);
			next += interval;
			continue;
		}
		if (atomic_load(&probe_window))
			probe_add(p, now_s() - next);
		next += interval;
	}
	conn_close(&c);
	free(buf);
	return NULL;
}

static void
probe_window_collect(struct phase_result *r, double secs)
{
	size_t total = 0, k, errors = 0;
	double *v;
	int i;

	for (i = 0; i < o.probe_conns; i++)
		total += probes[i].n;
	if ((v = calloc(total + 1, sizeof(double))) == NULL)
		die("out of memory");
	for (i = 0, k = 0; i < o.probe_conns; i++) {
		memcpy(v + k, probes[i].v, probes[i].n * sizeof(double));
		k += probes[i].n;
		errors += probes[i].errors;
		if (probes[i].errors)
			fprintf(stderr, "est-bench: probe %d: %zu errors (%s)\n", i, probes[i].errors,
			    probes[i].err);
		probes[i].n = 0;
		probes[i].errors = 0;
	}
	summarize(v, total, secs, r);
	r->errors = errors;
	free(v);
}

/* ---- duplicate serials ---- */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *
norm_serial(const char *s, char out[80])
{
	size_t i = 0;

	while (s[0] == '0' && s[1] != '\0')
		s++;
	for (; s[i] && i < 79; i++)
		out[i] = (char)(s[i] >= 'a' && s[i] <= 'f' ? s[i] - 32 : s[i]);
	out[i] = '\0';
	return out;
}

/* Counts duplicates in v (sorted in place). */
static size_t
count_dups(char **v, size_t n)
{
	size_t i, d = 0;

	qsort(v, n, sizeof(*v), cmp_str);
	for (i = 1; i < n; i++)
		if (strcmp(v[i], v[i - 1]) == 0)
			d++;
	return d;
}

/* Returns the number of duplicate serials in the CA database, *missing the serials
 * answered that it does not hold; -1 if it cannot be read. */
static long
db_check(char **answered, size_t nans, size_t *rows, size_t *missing)
{
	FILE *f = fopen(o.db, "r");
	char line[4096], **v = NULL, tmp[80];
	size_t n = 0, cap = 0, i, dups;

	*missing = 0;
	*rows = 0;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *fld[6], *s = line;
		int k;

		for (k = 0; k < 6 && s != NULL; k++) {
			fld[k] = s;
			if ((s = strchr(s, '\t')) != NULL)
				*s++ = '\0';
		}
		if (k < 4)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			if ((v = realloc(v, cap * sizeof(*v))) == NULL)
				die("out of memory");
		}
		if ((v[n++] = strdup(norm_serial(fld[3], tmp))) == NULL)
			die("out of memory");
	}
	fclose(f);
	*rows = n;
	dups = count_dups(v, n);
	for (i = 0; i < nans; i++)
		if (bsearch(&answered[i], v, n, sizeof(*v), cmp_str) == NULL)
			(*missing)++;
	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return (long)dups;
}

/* ---- main ---- */

static void
load_tokens(void)
{
	FILE *f = fopen(o.tokens, "r");
	char line[1024], id[256], tok[512];
	size_t cap = 0;

	if (f == NULL)
		die("cannot open %s: %s", o.tokens, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%255s %511s", id, tok) != 2)
			continue;
		if (nagents == cap) {
			cap = cap ? 2 * cap : 1024;
			if ((agents = realloc(agents, cap * sizeof(*agents))) == NULL)
				die("out of memory");
		}
		memset(&agents[nagents], 0, sizeof(*agents));
		if ((agents[nagents].id = strdup(id)) == NULL ||
		    (agents[nagents].token = strdup(tok)) == NULL)
			die("out of memory");
		nagents++;
	}
	fclose(f);
	if (nagents == 0)
		die("no 'AGENT TOKEN' lines in %s", o.tokens);
	if (nagents > 250 * 250)
		die("at most %d agents (one loopback address each)", 250 * 250);
}

static void
free_all(void)
{
	size_t i;

	for (i = 0; i < nagents; i++) {
		struct agent *a = &agents[i];

		free(a->id);
		free(a->token);
		free(a->csr);
		free(a->csr2);
		EVP_PKEY_free(a->key);
		EVP_PKEY_free(a->key2);
		X509_free(a->cert);
		X509_free(a->cert2);
	}
	free(agents);
	if (probes != NULL) {
		X509_free(probes[0].cert);
		EVP_PKEY_free(probes[0].key);
		for (i = 0; i < (size_t)o.probe_conns; i++)
			free(probes[i].v);
		free(probes);
	}
	SSL_CTX_free(g_ctx);
}

static void
usage(void)
{
	fprintf(stderr,
"usage: est-bench --enroll HOST:PORT --mtls HOST:PORT --ca CA.pem --tokens FILE\n"
"                 [--servername NAME] [--concurrency N] [--db INDEX.txt]\n"
"                 [--admin HOST:PORT --expect-agents N] [--settle-max S]\n"
"                 [--probe-cert CERT --probe-key KEY] [--probe-rate R] [--probe-conns K]\n"
"                 [--baseline S] [--path P] [--json]\n"
"  --tokens FILE      lines 'AGENT TOKEN' (scripts/agent-token), one agent each\n"
"  --concurrency N    requests in flight per phase (default 50)\n"
"  --db FILE          the CA database (ca/index.txt): check it for duplicate serials\n"
"  --admin HOST:PORT  the gateway's admin listener: before renewing, wait until its\n"
"                     identity_map_agents gauge reaches --expect-agents\n"
"  --probe-cert/-key  a mapped agent certificate for the keep-alive probe (tools/call\n"
"                     on --path, default /mcp); without it no probe\n"
"  --probe-rate R     probe requests per second in total (default 200), open loop\n"
"  --probe-conns K    probe keep-alive connections (default 4)\n"
"  --baseline S       seconds of probe alone before the renewals (default 10)\n"
"Exit status: 0 all enrolled and renewed, no error, no duplicate serial; 1 otherwise;\n"
"2 usage or set-up error.\n");
	exit(2);
}

static void
print_phase(const char *name, const struct phase_result *r)
{
	printf("%-14s %6zu ok %4zu err %8.1f/s  p50 %7.2f  p90 %7.2f  p99 %7.2f  max %7.2f ms"
	    "  (%.2f s)\n", name, r->ok, r->errors, r->rate, r->p50, r->p90, r->p99, r->max,
	    r->secs);
}

static void
json_phase(const char *name, const struct phase_result *r, int comma)
{
	printf("\"%s\":{\"ok\":%zu,\"errors\":%zu,\"seconds\":%.3f,\"per_s\":%.1f,"
	    "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f}}%s", name, r->ok,
	    r->errors, r->secs, r->rate, r->p50, r->p90, r->p99, r->max, comma ? "," : "");
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "enroll", required_argument, NULL, 'e' }, { "mtls", required_argument, NULL, 'm' },
		{ "admin", required_argument, NULL, 'A' }, { "ca", required_argument, NULL, 'c' },
		{ "tokens", required_argument, NULL, 't' }, { "db", required_argument, NULL, 'd' },
		{ "servername", required_argument, NULL, 's' },
		{ "concurrency", required_argument, NULL, 'n' },
		{ "expect-agents", required_argument, NULL, 'x' },
		{ "settle-max", required_argument, NULL, 'S' },
		{ "probe-cert", required_argument, NULL, 'C' },
		{ "probe-key", required_argument, NULL, 'K' },
		{ "probe-rate", required_argument, NULL, 'r' },
		{ "probe-conns", required_argument, NULL, 'k' },
		{ "baseline", required_argument, NULL, 'b' }, { "path", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct phase_result hs, enr, ren, alone = { 0 }, during = { 0 };
	char **ans, tmp[80];
	size_t i, nans = 0, dup_ans, rows = 0, missing = 0;
	long dup_db = -1;
	double t0;
	int ch, probing, fail;

	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'e': parse_hostport(optarg, &o.enroll_host, &o.enroll_port); break;
		case 'm': parse_hostport(optarg, &o.mtls_host, &o.mtls_port); break;
		case 'A': parse_hostport(optarg, &o.admin_host, &o.admin_port); break;
		case 'c': o.ca = optarg; break;
		case 't': o.tokens = optarg; break;
		case 'd': o.db = optarg; break;
		case 's': o.servername = optarg; break;
		case 'n': o.concurrency = atoi(optarg); break;
		case 'x': o.expect_agents = atol(optarg); break;
		case 'S': o.settle_max = atof(optarg); break;
		case 'C': o.probe_cert = optarg; break;
		case 'K': o.probe_key = optarg; break;
		case 'r': o.probe_rate = atof(optarg); break;
		case 'k': o.probe_conns = atoi(optarg); break;
		case 'b': o.baseline = atof(optarg); break;
		case 'p': o.path = optarg; break;
		case 'j': o.json = 1; break;
		default: usage();
		}
	}
	if (o.enroll_host == NULL || o.mtls_host == NULL || o.ca == NULL || o.tokens == NULL ||
	    o.concurrency < 1 || o.concurrency > 1000 || o.probe_conns < 1 || o.probe_rate <= 0 ||
	    (o.probe_cert == NULL) != (o.probe_key == NULL) ||
	    (o.admin_host != NULL && o.expect_agents < 0))
		usage();
	probing = o.probe_cert != NULL;
	load_tokens();

	if ((g_ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_load_verify_locations(g_ctx, o.ca, NULL) != 1)
		die("cannot load the CA %s", o.ca);
	SSL_CTX_set_verify(g_ctx, SSL_VERIFY_PEER, NULL);
	/* Every agent is a new client: no resumption across agents. */
	SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(g_ctx, SSL_OP_NO_TICKET);

	t0 = now_s();
	for (i = 0; i < nagents; i++) {
		agents[i].csr = make_csr(agents[i].id, &agents[i].key);
		agents[i].csr2 = make_csr(agents[i].id, &agents[i].key2);
	}
	fprintf(stderr, "est-bench: %zu agents, %zu keys and CSRs made in %.1f s (not measured)\n",
	    nagents, 2 * nagents, now_s() - t0);

	if (probing) {
		X509 *pc;
		EVP_PKEY *pk;
		FILE *f;

		if ((f = fopen(o.probe_cert, "r")) == NULL ||
		    (pc = PEM_read_X509(f, NULL, NULL, NULL)) == NULL)
			die("cannot read %s", o.probe_cert);
		fclose(f);
		if ((f = fopen(o.probe_key, "r")) == NULL ||
		    (pk = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL)
			die("cannot read %s", o.probe_key);
		fclose(f);
		if ((probes = calloc((size_t)o.probe_conns, sizeof(*probes))) == NULL)
			die("out of memory");
		for (ch = 0; ch < o.probe_conns; ch++) {
			probes[ch].idx = ch;
			probes[ch].cert = pc;
			probes[ch].key = pk;
		}
	}

	run_phase(0, &hs);
	run_phase(1, &enr);
	if (settle() == -1)
		exit(1);
	if (probing) {
		for (ch = 0; ch < o.probe_conns; ch++)
			if (pthread_create(&probes[ch].th, NULL, probe_run, &probes[ch]) != 0)
				die("pthread_create failed");
		usleep(500 * 1000);     /* connections open, upstream warm */
		atomic_store(&probe_window, 1);
		t0 = now_s();
		usleep((useconds_t)(o.baseline * 1e6));
		atomic_store(&probe_window, 0);
		probe_window_collect(&alone, now_s() - t0);
		atomic_store(&probe_window, 1);
	}
	run_phase(2, &ren);
	if (probing) {
		atomic_store(&probe_window, 0);
		probe_window_collect(&during, ren.secs);
		atomic_store(&probe_stop, 1);
		for (ch = 0; ch < o.probe_conns; ch++)
			pthread_join(probes[ch].th, NULL);
	}

	if ((ans = calloc(2 * nagents + 1, sizeof(*ans))) == NULL)
		die("out of memory");
	for (i = 0; i < nagents; i++) {
		if (agents[i].serial[0] && (ans[nans++] = strdup(norm_serial(agents[i].serial, tmp))) == NULL)
			die("out of memory");
		if (agents[i].serial2[0] && (ans[nans++] = strdup(norm_serial(agents[i].serial2, tmp))) == NULL)
			die("out of memory");
	}
	dup_ans = count_dups(ans, nans);
	if (o.db != NULL && (dup_db = db_check(ans, nans, &rows, &missing)) < 0)
		die("cannot read the CA database %s", o.db);

	fail = hs.errors || enr.errors || ren.errors || dup_ans || dup_db > 0 || missing ||
	    (probing && (alone.errors || during.errors));
	if (o.json) {
		printf("{\"agents\":%zu,\"concurrency\":%d,", nagents, o.concurrency);
		json_phase("cacerts", &hs, 1);
		json_phase("enroll", &enr, 1);
		json_phase("renew", &ren, 1);
		if (probing) {
			json_phase("keepalive_alone", &alone, 1);
			json_phase("keepalive_during_renew", &during, 1);
			printf("\"keepalive_p99_ratio\":%.3f,", alone.p99 > 0 ? during.p99 / alone.p99 : 0);
		}
		printf("\"serials\":%zu,\"duplicate_serials\":%zu,", nans, dup_ans);
		if (o.db != NULL)
			printf("\"db_rows\":%zu,\"db_duplicate_serials\":%ld,\"db_missing\":%zu,", rows,
			    dup_db, missing);
		printf("\"ok\":%s}\n", fail ? "false" : "true");
	} else {
		printf("agents %zu, concurrency %d\n", nagents, o.concurrency);
		print_phase("cacerts", &hs);
		print_phase("enroll", &enr);
		print_phase("renew", &ren);
		if (probing) {
			print_phase("keepalive", &alone);
			print_phase("ka+renewals", &during);
			printf("keep-alive p99 during renewals / alone: %.2fx (probe %.0f req/s over %d "
			    "connections)\n", alone.p99 > 0 ? during.p99 / alone.p99 : 0, o.probe_rate,
			    o.probe_conns);
		}
		printf("serials answered %zu, duplicates %zu", nans, dup_ans);
		if (o.db != NULL)
			printf("; CA database: %zu rows, %ld duplicates, %zu answered serials missing",
			    rows, dup_db, missing);
		printf("\n%s\n", fail ? "FAILED" : "OK");
	}
	for (i = 0; i < nans; i++)
		free(ans[i]);
	free(ans);
	free_all();
	return fail ? 1 : 0;
}
