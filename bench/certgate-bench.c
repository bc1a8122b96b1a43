/* certgate-bench: an mTLS HTTP/1.1 load generator for certgate (and any TLS peer).
 *
 * N connections spread over T threads (one libevent base and one SSL_CTX per thread)
 * present client certificates (one pair, or a directory of agents' pairs used round
 * robin) and send MCP tools/call POSTs (or GETs). Modes:
 *   --new        a full TLS handshake per request (connect, handshake, request, close)
 *   --resume     like --new but resuming the slot's last session (TLS 1.3 ticket)
 *   --keepalive  many requests per connection (the default)
 *   --idle N     open N connections, complete the handshakes, hold them idle
 * Closed loop by default (each connection sends its next request when the previous
 * answer arrived); --rate R makes it open loop: requests are scheduled every 1/R s
 * and latency is measured from the scheduled send time, so a stalled server is
 * charged for the requests it delayed (no coordinated omission).
 *
 * Latency goes into a log-linear histogram (1 us .. 60 s, 128 sub-buckets per
 * octave: < 0.8 % relative error); percentiles are reported, not averages.
 * Every slot first does one request that is not measured (warm-up: it opens the
 * keep-alive connections, fetches the first session for --resume, and warms the
 * server's upstream pool). With --server-pid, the server processes' CPU time
 * (utime+stime from /proc/PID/stat) and RSS are sampled right before and after the
 * measured window. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define MODE_KEEPALIVE	0
#define MODE_NEW	1
#define MODE_RESUME	2
#define MODE_IDLE	3

enum { E_CONNECT, E_HANDSHAKE, E_READ, E_STATUS, E_TIMEOUT, E_COUNT };
static const char *err_names[E_COUNT] = { "connect", "handshake", "read", "status",
    "timeout" };

/* Log-linear histogram of microseconds: values below 2*H_SUB are exact, above that
 * each power of two is split into H_SUB buckets. */
#define H_SUB		128
#define H_MAX_US	60000000ULL
#define H_BUCKETS	(2 * H_SUB + 18 * H_SUB)

struct hist {
	uint64_t c[H_BUCKETS];
	uint64_t n, max;
};

struct cred {
	X509 *cert;
	EVP_PKEY *key;
};

enum bc_state { ST_OFF, ST_CONNECTING, ST_HANDSHAKE, ST_WRITE, ST_READ, ST_READY,
	ST_HELD };

struct bthread;

struct bconn {
	struct bthread *t;
	int slot;                 /* global slot number (selects the credential) */
	int fd;
	SSL *ssl;
	SSL_SESSION *sess;        /* last session received (for --resume) */
	enum bc_state st;
	struct event ev, tmo;
	int ev_set;
	int inflight;
	int got_data;             /* application data read on this connection */
	int hs_kind;              /* 1 full, 2 resumed: counted when the server answers */
	uint64_t t_ref;           /* latency reference (send or scheduled time), ns */
	char wbuf[1024];
	int wlen;
	char *rbuf;
	size_t rlen, rcap, hlen;
	long clen;                /* -1 unknown */
	int chunked, close_after, status;
};

struct bthread {
	int idx;
	pthread_t tid;
	struct event_base *base;
	SSL_CTX *ctx;
	struct bconn *conns;
	int nconns;
	int warm, warm_done;
	int stopping;
	long quota;               /* requests to issue, -1 unlimited */
	long issued, inflight, reqid;
	/* open loop */
	double interval_ns;
	uint64_t t0;
	long k_due, k_next;
	int *freel, nfree;
	struct event tick, stop, deadline, poll;
	/* idle */
	int idle_n, idle_next, idle_done, idle_active, idle_par;
	long dropped;
	/* results */
	struct hist h;
	long ok, err[E_COUNT];
	long hs_full, hs_resumed;
	long hs_warm_full, hs_warm_resumed;  /* during the unmeasured warm-up */
	uint64_t t_last;
};

struct opts {
	char *host, *port, *sni, *cert, *key, *ca, *certs_dir, *get_path, *path, *tool;
	char *label;
	int mode, connections, threads, json, idle, timeout_ms, tls12, insecure;
	double duration, rate;
	long requests;
	pid_t pids[64];
	int npids;
};

static struct opts o = {
	.path = "/mcp", .tool = "echo", .connections = 8, .threads = 1,
	.timeout_ms = 10000, .requests = -1,
};
static struct cred *creds;
static int ncreds;
static struct sockaddr_storage g_addr;
static socklen_t g_addrlen;
static char g_hosthdr[300];
static pthread_barrier_t g_bar;
static atomic_int g_stop;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* ---- histogram ---- */

static int
h_index(uint64_t v)
{
	int e;

	if (v < 2 * H_SUB)
		return (int)v;
	if (v > H_MAX_US)
		v = H_MAX_US;
	e = 63 - __builtin_clzll(v) - 7;
	return 2 * H_SUB + (e - 1) * H_SUB + (int)((v >> e) - H_SUB);
}

/* Highest value that falls into bucket i. */
static uint64_t
h_value(int i)
{
	int e, m;

	if (i < 2 * H_SUB)
		return i;
	e = (i - 2 * H_SUB) / H_SUB + 1;
	m = (i - 2 * H_SUB) % H_SUB + H_SUB;
	return (((uint64_t)m + 1) << e) - 1;
}

static void
h_record(struct hist *h, uint64_t us)
{
	h->c[h_index(us)]++;
	h->n++;
	if (us > h->max)
		h->max = us;
}

static void
h_merge(struct hist *dst, const struct hist *src)
{
	int i;

	for (i = 0; i < H_BUCKETS; i++)
		dst->c[i] += src->c[i];
	dst->n += src->n;
	if (src->max > dst->max)
		dst->max = src->max;
}

/* Value at percentile p (0..100] in microseconds; 0 when empty. */
static uint64_t
h_pct(const struct hist *h, double p)
{
	uint64_t want, acc = 0, v;
	int i;

	if (h->n == 0)
		return 0;
	want = (uint64_t)ceil(p / 100.0 * (double)h->n);
	if (want == 0)
		want = 1;
	for (i = 0; i < H_BUCKETS; i++) {
		acc += h->c[i];
		if (acc >= want) {
			v = h_value(i);
			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}

/* ---- server sampling (/proc) ---- */

struct srv_sample {
	double cpu_s;
	long rss_kib;
	int ok;
};

static void
srv_sample(struct srv_sample *s)
{
	char path[64], buf[4096], *p;
	unsigned long ut, st;
	long ticks = sysconf(_SC_CLK_TCK);
	FILE *f;
	int i;

	memset(s, 0, sizeof(*s));
	s->ok = o.npids > 0;
	for (i = 0; i < o.npids; i++) {
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)o.pids[i]);
		if ((f = fopen(path, "r")) == NULL) {
			s->ok = 0;
			continue;
		}
		if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL &&
		    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		    &ut, &st) == 2)
			s->cpu_s += (double)(ut + st) / (double)ticks;
		else
			s->ok = 0;
		fclose(f);
		snprintf(path, sizeof(path), "/proc/%d/status", (int)o.pids[i]);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		while (fgets(buf, sizeof(buf), f) != NULL)
			if (strncmp(buf, "VmRSS:", 6) == 0)
				s->rss_kib += strtol(buf + 6, NULL, 10);
		fclose(f);
	}
}

/* ---- connections ---- */

static void bc_io_cb(evutil_socket_t, short, void *);
static void bc_next(struct bconn *);
static void bc_connect(struct bconn *);
static void bc_read(struct bconn *);

static void
bc_want(struct bconn *c, short what)
{
	if (c->ev_set)
		event_del(&c->ev);
	event_assign(&c->ev, c->t->base, c->fd, what, bc_io_cb, c);
	c->ev_set = 1;
	event_add(&c->ev, NULL);
}

static void
bc_close(struct bconn *c, int clean)
{
	if (c->ev_set) {
		event_del(&c->ev);
		c->ev_set = 0;
	}
	if (c->ssl != NULL) {
		/* close_notify so that the server sees an orderly close. */
		if (clean && SSL_is_init_finished(c->ssl))
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	c->st = ST_OFF;
}

static void
bt_check_end(struct bthread *t)
{
	if (t->stopping && t->inflight == 0 && !t->warm && o.mode != MODE_IDLE)
		event_base_loopbreak(t->base);
}

static void
bc_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	bc_next(arg);
}

static void idle_step(struct bthread *t);

/* A failed request or connection: count it, drop the connection, and let the slot
 * continue after 1 ms (no error storm, no recursion on immediate failures). */
static void
bc_fail(struct bconn *c, int kind)
{
	struct bthread *t = c->t;
	struct timeval tv = { 0, 1000 };

	evtimer_del(&c->tmo);
	t->err[kind]++;
	bc_close(c, 0);
	if (o.mode == MODE_IDLE) {
		t->idle_done++;
		t->idle_active--;
		idle_step(t);
		return;
	}
	if (c->inflight) {
		c->inflight = 0;
		t->inflight--;
	}
	if (event_base_once(t->base, -1, EV_TIMEOUT, bc_retry_cb, c, &tv) == -1)
		bc_next(c);
}

static void
bc_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	bc_fail(arg, E_TIMEOUT);
}

static void
bc_start(struct bconn *c, uint64_t t_ref)
{
	struct bthread *t = c->t;
	struct timeval tv;

	c->t_ref = t_ref;
	c->inflight = 1;
	t->inflight++;
	t->issued++;
	if (o.mode != MODE_IDLE) {
		tv.tv_sec = o.timeout_ms / 1000;
		tv.tv_usec = (o.timeout_ms % 1000) * 1000;
		evtimer_add(&c->tmo, &tv);
	}
	if (c->st == ST_READY)
		bc_io_cb(c->fd, 0, c);
	else
		bc_connect(c);
}

static void
bc_send(struct bconn *c)
{
	struct bthread *t = c->t;
	char body[256];
	int n;

	t->reqid++;
	if (o.get_path != NULL) {
		c->wlen = snprintf(c->wbuf, sizeof(c->wbuf), "GET %s HTTP/1.1\r\nHost: %s\r\n"
		    "Accept: application/json, text/event-stream\r\n\r\n", o.get_path,
		    g_hosthdr);
	} else {
		n = snprintf(body, sizeof(body), "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":"
		    "\"tools/call\",\"params\":{\"name\":\"%s\",\"arguments\":{\"message\":"
		    "\"hello\"}}}", t->reqid, o.tool);
		c->wlen = snprintf(c->wbuf, sizeof(c->wbuf), "POST %s HTTP/1.1\r\nHost: %s\r\n"
		    "Content-Type: application/json\r\n"
		    "Accept: application/json, text/event-stream\r\n"
		    "Content-Length: %d\r\n\r\n%s", o.path, g_hosthdr, n, body);
	}
	c->rlen = c->hlen = 0;
	c->clen = -1;
	c->chunked = c->close_after = c->status = 0;
	c->st = ST_WRITE;
	bc_io_cb(c->fd, 0, c);
}

static void
bc_count_hs(struct bconn *c)
{
	if (!c->t->warm) {
		if (c->hs_kind == 2)
			c->t->hs_resumed++;
		else if (c->hs_kind == 1)
			c->t->hs_full++;
	} else {
		if (c->hs_kind == 2)
			c->t->hs_warm_resumed++;
		else if (c->hs_kind == 1)
			c->t->hs_warm_full++;
	}
	c->hs_kind = 0;
}

static void
bc_handshake(struct bconn *c)
{
	struct bthread *t = c->t;
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		/* TLS 1.3 servers check the client certificate after the client has
		 * finished: count the handshake once the server answered (bc_read). */
		c->hs_kind = SSL_session_reused(c->ssl) ? 2 : 1;
		c->got_data = 0;
		if (o.mode == MODE_IDLE) {
			bc_count_hs(c);
			evtimer_del(&c->tmo);
			c->st = ST_HELD;
			bc_want(c, EV_READ);
			t->idle_done++;
			t->idle_active--;
			idle_step(t);
			return;
		}
		bc_send(c);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		bc_want(c, EV_READ);
	else if (e == SSL_ERROR_WANT_WRITE)
		bc_want(c, EV_WRITE);
	else
		bc_fail(c, E_HANDSHAKE);
}

static void
bc_connected(struct bconn *c)
{
	struct cred *cr = &creds[c->slot % ncreds];
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 || err != 0) {
		bc_fail(c, E_CONNECT);
		return;
	}
	c->ssl = SSL_new(c->t->ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
	    SSL_use_certificate(c->ssl, cr->cert) != 1 ||
	    SSL_use_PrivateKey(c->ssl, cr->key) != 1) {
		bc_fail(c, E_HANDSHAKE);
		return;
	}
	SSL_set_app_data(c->ssl, c);
	if (o.sni != NULL)
		SSL_set_tlsext_host_name(c->ssl, o.sni);
	if (o.mode == MODE_RESUME && c->sess != NULL && SSL_SESSION_is_resumable(c->sess))
		SSL_set_session(c->ssl, c->sess);
	SSL_set_connect_state(c->ssl);
	c->st = ST_HANDSHAKE;
	bc_handshake(c);
}

static void
bc_connect(struct bconn *c)
{
	int one = 1;

	c->fd = socket(g_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		bc_fail(c, E_CONNECT);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&g_addr, g_addrlen) == 0) {
		bc_connected(c);
		return;
	}
	if (errno != EINPROGRESS) {
		bc_fail(c, E_CONNECT);
		return;
	}
	c->st = ST_CONNECTING;
	bc_want(c, EV_WRITE);
}

static int
hdr_is(const char *line, const char *name, const char **val)
{
	size_t n = strlen(name);

	if (strncasecmp(line, name, n) != 0 || line[n] != ':')
		return 0;
	*val = line + n + 1;
	while (**val == ' ' || **val == '\t')
		(*val)++;
	return 1;
}

/* Parses the response in c->rbuf. Returns 1 when complete, 0 when more bytes are
 * needed, -1 when malformed. eof: the peer closed the connection. */
static int
bc_parse(struct bconn *c, int eof)
{
	char *p, *end, *eol, *hend;
	const char *v;
	unsigned long sz;

	c->rbuf[c->rlen] = '\0';
	if (c->hlen == 0) {
		hend = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
		if (hend == NULL)
			return c->rlen > 65536 || eof ? -1 : 0;
		if (strncmp(c->rbuf, "HTTP/1.", 7) != 0 || c->rlen < 12)
			return -1;
		c->status = atoi(c->rbuf + 9);
		c->hlen = hend - c->rbuf + 4;
		for (p = strstr(c->rbuf, "\r\n") + 2; p < hend; p = eol + 2) {
			eol = strstr(p, "\r\n");
			if (hdr_is(p, "content-length", &v))
				c->clen = strtol(v, NULL, 10);
			else if (hdr_is(p, "transfer-encoding", &v))
				c->chunked = strncasecmp(v, "chunked", 7) == 0;
			else if (hdr_is(p, "connection", &v))
				c->close_after = strncasecmp(v, "close", 5) == 0;
		}
		if (c->status == 204 || c->status == 304)
			c->clen = 0;
	}
	if (c->chunked) {
		p = c->rbuf + c->hlen;
		end = c->rbuf + c->rlen;
		for (;;) {
			eol = memmem(p, end - p, "\r\n", 2);
			if (eol == NULL)
				return eof ? -1 : 0;
			sz = strtoul(p, NULL, 16);
			p = eol + 2;
			if (sz == 0) {
				if (end - p >= 2 && memcmp(p, "\r\n", 2) == 0)
					return 1;
				return memmem(p, end - p, "\r\n\r\n", 4) != NULL ? 1 :
				    (eof ? -1 : 0);
			}
			if ((size_t)(end - p) < sz + 2)
				return eof ? -1 : 0;
			p += sz + 2;
		}
	}
	if (c->clen >= 0)
		return c->rlen - c->hlen >= (size_t)c->clen ? 1 : (eof ? -1 : 0);
	c->close_after = 1;
	return eof ? 1 : 0;
}

static void
bc_done(struct bconn *c)
{
	struct bthread *t = c->t;
	uint64_t now = now_ns();

	evtimer_del(&c->tmo);
	c->inflight = 0;
	t->inflight--;
	if (!t->warm) {
		t->t_last = now;
		if (c->status >= 200 && c->status < 300) {
			t->ok++;
			h_record(&t->h, now > c->t_ref ? (now - c->t_ref + 500) / 1000 : 0);
		} else {
			t->err[E_STATUS]++;
		}
	} else if (c->status < 200 || c->status >= 300) {
		t->err[E_STATUS]++;
	}
	if (o.mode != MODE_KEEPALIVE || c->close_after) {
		bc_close(c, 1);
	} else {
		c->st = ST_READY;
		bc_want(c, EV_READ);
	}
	bc_next(c);
}

static void
bc_read(struct bconn *c)
{
	int r, e, p;

	for (;;) {
		if (c->rcap - c->rlen < 4096) {
			c->rcap = c->rcap ? c->rcap * 2 : 16384;
			c->rbuf = realloc(c->rbuf, c->rcap);
			if (c->rbuf == NULL)
				abort();
		}
		ERR_clear_error();
		r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(c->rcap - c->rlen - 1));
		if (r > 0) {
			c->rlen += r;
			c->got_data = 1;
			if (c->hs_kind)
				bc_count_hs(c);
			p = bc_parse(c, 0);
			if (p == 1) {
				bc_done(c);
				return;
			}
			if (p == -1) {
				bc_fail(c, E_READ);
				return;
			}
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ) {
			bc_want(c, EV_READ);
			return;
		}
		if (e == SSL_ERROR_WANT_WRITE) {
			bc_want(c, EV_WRITE);
			return;
		}
		if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && c->got_data)) {
			if (bc_parse(c, 1) == 1) {
				c->close_after = 1;
				bc_done(c);
				return;
			}
		}
		/* In TLS 1.3 the client finishes its handshake before the server has
		 * checked the client certificate: a refusal arrives as an alert on the
		 * first read. */
		bc_fail(c, !c->got_data && e == SSL_ERROR_SSL ? E_HANDSHAKE : E_READ);
		return;
	}
}

static void
bc_write(struct bconn *c)
{
	int r, e;

	ERR_clear_error();
	r = SSL_write(c->ssl, c->wbuf, c->wlen);
	if (r > 0) {
		c->st = ST_READ;
		bc_read(c);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		bc_want(c, EV_READ);
	else if (e == SSL_ERROR_WANT_WRITE)
		bc_want(c, EV_WRITE);
	else
		bc_fail(c, E_READ);
}

/* An idle connection (keep-alive between requests, or --idle) became readable:
 * session tickets are consumed; a close or unexpected data drops the connection. */
static void
bc_idle_read(struct bconn *c)
{
	char buf[512];
	int r, e;

	for (;;) {
		ERR_clear_error();
		r = SSL_read(c->ssl, buf, sizeof(buf));
		if (r > 0)
			continue;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ) {
			bc_want(c, EV_READ);
			return;
		}
		break;
	}
	if (c->st == ST_HELD)
		c->t->dropped++;
	bc_close(c, 0);
}

static void
bc_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bconn *c = arg;

	switch (c->st) {
	case ST_CONNECTING: bc_connected(c); break;
	case ST_HANDSHAKE: bc_handshake(c); break;
	case ST_WRITE: bc_write(c); break;
	case ST_READ: bc_read(c); break;
	case ST_READY:
		if (c->inflight)
			bc_send(c);
		else
			bc_idle_read(c);
		break;
	case ST_HELD: bc_idle_read(c); break;
	case ST_OFF: break;
	}
}

static int
bc_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct bconn *c = SSL_get_app_data(ssl);

	if (c == NULL)
		return 0;
	if (c->sess != NULL)
		SSL_SESSION_free(c->sess);
	c->sess = sess;
	return 1;
}

/* ---- scheduling ---- */

static void
ol_update_due(struct bthread *t, uint64_t now)
{
	long k = (long)((double)(now - t->t0) / t->interval_ns) + 1;

	if (t->quota >= 0 && k > t->quota)
		k = t->quota;
	if (k > t->k_due)
		t->k_due = k;
}

static int ol_quota_done(struct bthread *);
static void ol_arm(struct bthread *, uint64_t);

static void
bc_next(struct bconn *c)
{
	struct bthread *t = c->t;
	uint64_t now;

	if (t->warm) {
		if (++t->warm_done == t->nconns)
			event_base_loopbreak(t->base);
		return;
	}
	if (t->stopping) {
		bt_check_end(t);
		return;
	}
	if (o.rate > 0) {
		now = now_ns();
		ol_update_due(t, now);
		if (t->k_next < t->k_due) {
			bc_start(c, t->t0 + (uint64_t)(t->k_next * t->interval_ns));
			t->k_next++;
			ol_quota_done(t);
		} else if (!ol_quota_done(t)) {
			t->freel[t->nfree++] = c - t->conns;
			ol_arm(t, now);
		}
		return;
	}
	if (t->quota >= 0 && t->issued >= t->quota) {
		t->stopping = 1;
		bt_check_end(t);
		return;
	}
	bc_start(c, now_ns());
}

/* Open loop: all requests scheduled are issued; stop when --requests is reached. */
static int
ol_quota_done(struct bthread *t)
{
	if (t->quota >= 0 && t->k_next >= t->quota) {
		t->stopping = 1;
		bt_check_end(t);
		return 1;
	}
	return 0;
}

/* Arms the tick for the next scheduled send while a connection is free (busy
 * connections pick up due requests themselves when they finish). */
static void
ol_arm(struct bthread *t, uint64_t now)
{
	struct timeval tv;
	uint64_t next;

	if (t->stopping || t->nfree == 0 || evtimer_pending(&t->tick, NULL))
		return;
	next = t->t0 + (uint64_t)((double)t->k_due * t->interval_ns);
	next = next > now ? next - now : 0;
	tv.tv_sec = next / 1000000000ULL;
	tv.tv_usec = (next % 1000000000ULL) / 1000;
	evtimer_add(&t->tick, &tv);
}

static void
ol_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bthread *t = arg;
	uint64_t now = now_ns();
	struct bconn *c;

	if (t->stopping)
		return;
	ol_update_due(t, now);
	while (t->k_next < t->k_due && t->nfree > 0) {
		c = &t->conns[t->freel[--t->nfree]];
		bc_start(c, t->t0 + (uint64_t)(t->k_next * t->interval_ns));
		t->k_next++;
	}
	if (ol_quota_done(t))
		return;
	ol_arm(t, now);
}

static void
bt_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bthread *t = arg;

	if (o.rate > 0)
		ol_update_due(t, now_ns());
	t->stopping = 1;
	bt_check_end(t);
}

static void
bt_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bthread *t = arg;
	int i;

	for (i = 0; i < t->nconns; i++) {
		if (t->conns[i].inflight) {
			t->err[E_TIMEOUT]++;
			t->conns[i].inflight = 0;
			evtimer_del(&t->conns[i].tmo);
			bc_close(&t->conns[i], 0);
		}
	}
	t->inflight = 0;
	event_base_loopbreak(t->base);
}

/* --idle: keeps at most idle_par handshakes in progress until idle_n are done. */
static void
idle_step(struct bthread *t)
{
	struct timeval tv;
	struct bconn *c;

	while (t->idle_next < t->idle_n && t->idle_active < t->idle_par) {
		c = &t->conns[t->idle_next++];
		t->idle_active++;
		tv.tv_sec = o.timeout_ms / 1000;
		tv.tv_usec = (o.timeout_ms % 1000) * 1000;
		evtimer_add(&c->tmo, &tv);
		bc_connect(c);
	}
	if (t->idle_done == t->idle_n)
		event_base_loopbreak(t->base);
}

static void
idle_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bthread *t = arg;

	if (atomic_load(&g_stop))
		event_base_loopbreak(t->base);
}

/* ---- threads ---- */

static SSL_CTX *
bt_ctx_new(void)
{
	SSL_CTX *ctx;

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (o.tls12)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	if (o.insecure) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	} else {
		if (SSL_CTX_load_verify_locations(ctx, o.ca, NULL) != 1) {
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, bc_new_session_cb);
	if (o.mode == MODE_IDLE)
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

static void
bt_measure(struct bthread *t, uint64_t t0)
{
	struct timeval tv;
	double d;
	int i;

	t->warm = 0;
	t->t0 = t0;
	t->issued = 0;
	evtimer_assign(&t->tick, t->base, ol_tick_cb, t);
	evtimer_assign(&t->stop, t->base, bt_stop_cb, t);
	evtimer_assign(&t->deadline, t->base, bt_deadline_cb, t);
	if (o.duration > 0) {
		d = o.duration;
		tv.tv_sec = (long)d;
		tv.tv_usec = (long)((d - (long)d) * 1e6);
		evtimer_add(&t->stop, &tv);
		d += o.timeout_ms / 1000.0 + 1;
		tv.tv_sec = (long)d;
		tv.tv_usec = (long)((d - (long)d) * 1e6);
		evtimer_add(&t->deadline, &tv);
	}
	if (o.rate > 0) {
		t->interval_ns = 1e9 * o.threads / o.rate;
		for (i = t->nconns - 1; i >= 0; i--)
			t->freel[t->nfree++] = i;
		ol_tick_cb(-1, 0, t);
	} else {
		for (i = 0; i < t->nconns && !t->stopping; i++)
			bc_next(&t->conns[i]);
	}
	if (!t->stopping || t->inflight > 0)
		event_base_dispatch(t->base);
}

static void *
bt_run(void *arg)
{
	struct bthread *t = arg;
	struct timeval tv = { 0, 50000 };
	uint64_t t0;
	int i;

	/* Warm-up: one unmeasured request per slot, or the idle connections. */
	if (o.mode == MODE_IDLE) {
		if (t->idle_n > 0) {
			idle_step(t);
			event_base_dispatch(t->base);
		}
	} else if (t->nconns > 0) {
		t->warm = 1;
		for (i = 0; i < t->nconns; i++)
			bc_start(&t->conns[i], now_ns());
		event_base_dispatch(t->base);
	}
	t->warm = 0;
	pthread_barrier_wait(&g_bar);   /* main samples the server */
	pthread_barrier_wait(&g_bar);
	t0 = now_ns();
	if (o.mode == MODE_IDLE) {
		event_assign(&t->poll, t->base, -1, EV_PERSIST, idle_poll_cb, t);
		event_add(&t->poll, &tv);
		event_base_dispatch(t->base);
		event_del(&t->poll);
	} else if (t->nconns > 0) {
		bt_measure(t, t0);
	}
	if (t->t_last == 0)
		t->t_last = now_ns();
	for (i = 0; i < t->nconns; i++) {
		evtimer_del(&t->conns[i].tmo);
		bc_close(&t->conns[i], 1);
	}
	return NULL;
}

/* ---- set-up ---- */

static int
load_cred(const char *certf, const char *keyf)
{
	struct cred *n;
	FILE *f;
	X509 *x = NULL;
	EVP_PKEY *k = NULL;

	if ((f = fopen(certf, "r")) != NULL) {
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if ((f = fopen(keyf, "r")) != NULL) {
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (x == NULL || k == NULL || X509_check_private_key(x, k) != 1) {
		fprintf(stderr, "certgate-bench: cannot load %s / %s (or they do not match)\n",
		    certf, keyf);
		X509_free(x);
		EVP_PKEY_free(k);
		return -1;
	}
	n = realloc(creds, (ncreds + 1) * sizeof(*creds));
	if (n == NULL)
		return -1;
	creds = n;
	creds[ncreds].cert = x;
	creds[ncreds].key = k;
	ncreds++;
	return 0;
}

static int
load_certs_dir(const char *dir)
{
	struct dirent **ents;
	char c[PATH_MAX], k[PATH_MAX], ca[PATH_MAX];
	struct stat sb;
	int i, n, rc = 0;

	n = scandir(dir, &ents, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "certgate-bench: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (ents[i]->d_name[0] != '.') {
			snprintf(c, sizeof(c), "%s/%s/cert.pem", dir, ents[i]->d_name);
			snprintf(k, sizeof(k), "%s/%s/key.pem", dir, ents[i]->d_name);
			snprintf(ca, sizeof(ca), "%s/%s/ca.pem", dir, ents[i]->d_name);
			if (stat(c, &sb) == 0 && stat(k, &sb) == 0) {
				if (load_cred(c, k) == -1)
					rc = -1;
				if (o.ca == NULL && stat(ca, &sb) == 0)
					o.ca = strdup(ca);
			}
		}
		free(ents[i]);
	}
	free(ents);
	if (ncreds == 0) {
		fprintf(stderr, "certgate-bench: no */cert.pem + */key.pem in %s\n", dir);
		return -1;
	}
	return rc;
}

static int
parse_target(const char *s)
{
	struct addrinfo hints, *res;
	const char *colon;
	char host[256];
	int rc;

	colon = strrchr(s, ':');
	if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof(host)) {
		fprintf(stderr, "certgate-bench: --connect wants HOST:PORT\n");
		return -1;
	}
	memcpy(host, s, colon - s);
	host[colon - s] = '\0';
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, colon + 1, &hints, &res)) != 0) {
		fprintf(stderr, "certgate-bench: %s: %s\n", s, gai_strerror(rc));
		return -1;
	}
	memcpy(&g_addr, res->ai_addr, res->ai_addrlen);
	g_addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	o.host = strdup(host);
	o.port = strdup(colon + 1);
	return 0;
}

static void
parse_pids(const char *s)
{
	char *dup = strdup(s), *tok, *save = NULL;

	for (tok = strtok_r(dup, ", ", &save); tok != NULL && o.npids < 64;
	    tok = strtok_r(NULL, ", ", &save))
		if (atoi(tok) > 0)
			o.pids[o.npids++] = atoi(tok);
	free(dup);
}

static void
usage(FILE *f)
{
	fprintf(f,
"usage: certgate-bench --connect HOST:PORT (--cert F --key F | --certs-dir DIR)\n"
"                      [--ca F] [MODE] [options]\n"
"\n"
"mTLS HTTP/1.1 load generator. Modes:\n"
"  --keepalive        many requests per connection (default)\n"
"  --new              full TLS handshake per request (connect, request, close)\n"
"  --resume           TLS session resumption (1.3 ticket) per request\n"
"  --idle N           open N mTLS connections, hold them idle for --duration\n"
"options:\n"
"  --cert F --key F   client certificate and key (PEM)\n"
"  --certs-dir DIR    use every DIR/*/cert.pem + key.pem, round robin per connection\n"
"  --ca F             CA bundle to verify the server (default DIR/*/ca.pem)\n"
"  --insecure         do not verify the server certificate\n"
"  --servername NAME  SNI and Host (default: the --connect host)\n"
"  --path P           POST path (default /mcp); the body is an MCP tools/call\n"
"  --tool NAME        tool name in the tools/call body (default echo)\n"
"  --get PATH         send GET PATH instead of the POST\n"
"  --duration S       measured time (default 10 s; --idle: hold time)\n"
"  --requests N       stop after N requests (closed loop; no default duration)\n"
"  --rate R           open loop: R requests/s in total, latency from scheduled time\n"
"  --connections N    concurrent connections (default 8; --idle: handshakes in flight)\n"
"  --threads T        client threads (default 1)\n"
"  --timeout MS       per-request timeout (default 10000)\n"
"  --tls12            limit to TLS 1.2\n"
"  --server-pid PIDS  sample CPU and RSS of these server processes (comma list,\n"
"                     repeatable) before and after the measured window\n"
"  --label S          a name echoed in the report\n"
"  --json             print one JSON line with all figures instead of the table\n"
"  -h, --help         this help\n"
"exit status: 0 when at least one request (or idle connection) succeeded and no\n"
"error occurred, 1 otherwise, 2 on usage errors.\n");
}

static int
parse_args(int argc, char **argv)
{
	enum { OPT_CERT = 256, OPT_KEY, OPT_CA, OPT_DIR, OPT_NEW, OPT_RESUME, OPT_KA, OPT_IDLE, OPT_GET,
		OPT_PATH, OPT_TOOL, OPT_DUR, OPT_REQ, OPT_RATE, OPT_CONN, OPT_THR, OPT_TMO, OPT_TLS12, OPT_INS,
		OPT_SNI, OPT_PID, OPT_LABEL, OPT_JSON, OPT_CONNECT };
	static const struct option lo[] = {
		{ "connect", required_argument, NULL, OPT_CONNECT },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "ca", required_argument, NULL, OPT_CA },
		{ "certs-dir", required_argument, NULL, OPT_DIR },
		{ "new", no_argument, NULL, OPT_NEW },
		{ "resume", no_argument, NULL, OPT_RESUME },
		{ "keepalive", no_argument, NULL, OPT_KA },
		{ "idle", required_argument, NULL, OPT_IDLE },
		{ "get", required_argument, NULL, OPT_GET },
		{ "path", required_argument, NULL, OPT_PATH },
		{ "tool", required_argument, NULL, OPT_TOOL },
		{ "duration", required_argument, NULL, OPT_DUR },
		{ "requests", required_argument, NULL, OPT_REQ },
		{ "rate", required_argument, NULL, OPT_RATE },
		{ "connections", required_argument, NULL, OPT_CONN },
		{ "threads", required_argument, NULL, OPT_THR },
		{ "timeout", required_argument, NULL, OPT_TMO },
		{ "tls12", no_argument, NULL, OPT_TLS12 },
		{ "insecure", no_argument, NULL, OPT_INS },
		{ "servername", required_argument, NULL, OPT_SNI },
		{ "server-pid", required_argument, NULL, OPT_PID },
		{ "label", required_argument, NULL, OPT_LABEL },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *target = NULL;
	int ch, dur_set = 0;

	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case OPT_CONNECT: target = optarg; break;
		case OPT_CERT: o.cert = optarg; break;
		case OPT_KEY: o.key = optarg; break;
		case OPT_CA: o.ca = optarg; break;
		case OPT_DIR: o.certs_dir = optarg; break;
		case OPT_NEW: o.mode = MODE_NEW; break;
		case OPT_RESUME: o.mode = MODE_RESUME; break;
		case OPT_KA: o.mode = MODE_KEEPALIVE; break;
		case OPT_IDLE: o.mode = MODE_IDLE; o.idle = atoi(optarg); break;
		case OPT_GET: o.get_path = optarg; break;
		case OPT_PATH: o.path = optarg; break;
		case OPT_TOOL: o.tool = optarg; break;
		case OPT_DUR: o.duration = atof(optarg); dur_set = 1; break;
		case OPT_REQ: o.requests = atol(optarg); break;
		case OPT_RATE: o.rate = atof(optarg); break;
		case OPT_CONN: o.connections = atoi(optarg); break;
		case OPT_THR: o.threads = atoi(optarg); break;
		case OPT_TMO: o.timeout_ms = atoi(optarg); break;
		case OPT_TLS12: o.tls12 = 1; break;
		case OPT_INS: o.insecure = 1; break;
		case OPT_SNI: o.sni = optarg; break;
		case OPT_PID: parse_pids(optarg); break;
		case OPT_LABEL: o.label = optarg; break;
		case OPT_JSON: o.json = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc || target == NULL) {
		fprintf(stderr, "certgate-bench: %s\n", target == NULL ?
		    "--connect HOST:PORT is required" : "unexpected argument");
		return -1;
	}
	if (!dur_set && o.requests < 0)
		o.duration = 10;
	if (o.connections < 1 || o.threads < 1 || o.threads > 256 || o.timeout_ms < 1 ||
	    (o.mode == MODE_IDLE && o.idle < 1) || o.duration < 0 || o.rate < 0 ||
	    (o.mode == MODE_IDLE && o.duration <= 0)) {
		fprintf(stderr, "certgate-bench: bad numeric option (see --help)\n");
		return -1;
	}
	if (o.mode != MODE_IDLE && o.connections < o.threads)
		o.threads = o.connections;
	if (o.mode == MODE_IDLE && o.idle < o.threads)
		o.threads = o.idle;
	if (o.requests >= 0 && o.requests < o.connections && o.rate <= 0) {
		fprintf(stderr, "certgate-bench: --requests must be >= --connections\n");
		return -1;
	}
	if ((o.cert == NULL) != (o.key == NULL) || (o.cert == NULL && o.certs_dir == NULL)) {
		fprintf(stderr, "certgate-bench: give --cert and --key, or --certs-dir\n");
		return -1;
	}
	if (parse_target(target) == -1)
		return -1;
	if (o.sni == NULL && inet_pton(AF_INET, o.host, &(struct in_addr){0}) != 1 &&
	    inet_pton(AF_INET6, o.host, &(struct in6_addr){0}) != 1)
		o.sni = o.host;
	snprintf(g_hosthdr, sizeof(g_hosthdr), "%s:%s", o.sni ? o.sni : o.host, o.port);
	return 0;
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int
setup_thread(struct bthread *t, int idx)
{
	int per, extra, first, i, n;

	t->idx = idx;
	t->base = event_base_new();
	t->ctx = bt_ctx_new();
	if (t->base == NULL || t->ctx == NULL)
		return -1;
	if (o.mode == MODE_IDLE) {
		per = o.idle / o.threads;
		extra = o.idle % o.threads;
		n = per + (idx < extra);
		first = idx * per + (idx < extra ? idx : extra);
		t->idle_n = n;
		t->idle_par = o.connections / o.threads + (idx < o.connections % o.threads);
		if (t->idle_par < 1)
			t->idle_par = 1;
	} else {
		per = o.connections / o.threads;
		extra = o.connections % o.threads;
		n = per + (idx < extra);
		first = idx * per + (idx < extra ? idx : extra);
		t->quota = -1;
		if (o.requests >= 0)
			t->quota = o.requests / o.threads + (idx < o.requests % o.threads);
	}
	t->nconns = n;
	t->conns = calloc(n > 0 ? n : 1, sizeof(*t->conns));
	t->freel = calloc(n > 0 ? n : 1, sizeof(int));
	if (t->conns == NULL || t->freel == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		t->conns[i].t = t;
		t->conns[i].slot = first + i;
		t->conns[i].fd = -1;
		evtimer_assign(&t->conns[i].tmo, t->base, bc_timeout_cb, &t->conns[i]);
	}
	return 0;
}

static double
cpu_self(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static const char *
mode_name(void)
{
	static const char *n[] = { "keepalive", "new", "resume", "idle" };

	return n[o.mode];
}

/* See main(): what the report needs stays reachable until exit. */
static struct hist *volatile bench_keep_h;
static struct bthread *volatile bench_keep_th;

int
main(int argc, char **argv)
{
	struct bthread *th;
	struct srv_sample s_start, s_before, s_hold, s_after;
	struct hist *h;
	struct timespec ts;
	double elapsed, rps, hps, ccpu0, ccpu, scpu = 0;
	long ok = 0, err[E_COUNT] = { 0 }, errs = 0, full = 0, resumed = 0, dropped = 0;
	long unsent = 0, established = 0, wfull = 0, wres = 0;
	uint64_t t0, tl = 0;
	int i, k;

	if (parse_args(argc, argv) == -1)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	if (o.certs_dir != NULL && load_certs_dir(o.certs_dir) == -1)
		return 1;
	if (o.cert != NULL && load_cred(o.cert, o.key) == -1)
		return 1;
	if (o.ca == NULL && !o.insecure) {
		fprintf(stderr, "certgate-bench: give --ca (or --insecure)\n");
		return 2;
	}
	h = calloc(1, sizeof(*h));
	th = calloc(o.threads, sizeof(*th));
	/* Kept reachable until exit (the threads' event bases and SSL contexts hang off
	 * them and the process ends right after the report). */
	bench_keep_h = h;
	bench_keep_th = th;
	if (h == NULL || th == NULL)
		return 1;
	srv_sample(&s_start);
	for (i = 0; i < o.threads; i++) {
		if (setup_thread(&th[i], i) == -1) {
			fprintf(stderr, "certgate-bench: set-up failed (CA file %s?)\n", o.ca);
			ERR_print_errors_fp(stderr);
			return 1;
		}
	}
	pthread_barrier_init(&g_bar, NULL, o.threads + 1);
	for (i = 0; i < o.threads; i++)
		pthread_create(&th[i].tid, NULL, bt_run, &th[i]);
	pthread_barrier_wait(&g_bar);
	srv_sample(&s_before);
	ccpu0 = cpu_self();
	t0 = now_ns();
	pthread_barrier_wait(&g_bar);
	s_hold = s_before;
	if (o.mode == MODE_IDLE) {
		for (i = 0; i < o.threads; i++)
			established += th[i].idle_n - th[i].err[E_CONNECT] -
			    th[i].err[E_HANDSHAKE] - th[i].err[E_TIMEOUT];
		if (!o.json)
			printf("holding %ld idle connections for %.1f s\n", established,
			    o.duration);
		fprintf(stderr, "certgate-bench: holding %ld idle connections\n", established);
		fflush(stdout);
		ts.tv_sec = (time_t)o.duration;
		ts.tv_nsec = (long)((o.duration - (double)ts.tv_sec) * 1e9);
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
		srv_sample(&s_hold);
		atomic_store(&g_stop, 1);
	}
	for (i = 0; i < o.threads; i++)
		pthread_join(th[i].tid, NULL);
	srv_sample(&s_after);
	ccpu = cpu_self() - ccpu0;
	for (i = 0; i < o.threads; i++) {
		h_merge(h, &th[i].h);
		ok += th[i].ok;
		for (k = 0; k < E_COUNT; k++)
			err[k] += th[i].err[k];
		full += th[i].hs_full;
		resumed += th[i].hs_resumed;
		wfull += th[i].hs_warm_full;
		wres += th[i].hs_warm_resumed;
		dropped += th[i].dropped;
		if (o.rate > 0 && th[i].k_due > th[i].k_next)
			unsent += th[i].k_due - th[i].k_next;
		if (th[i].t_last > tl)
			tl = th[i].t_last;
	}
	for (k = 0; k < E_COUNT; k++)
		errs += err[k];
	if (o.mode == MODE_IDLE) {
		elapsed = o.duration;
		established -= dropped;
	} else {
		elapsed = tl > t0 ? (double)(tl - t0) / 1e9 : 1e-9;
	}
	rps = ok / elapsed;
	hps = (full + resumed) / elapsed;
	if (s_before.ok && s_after.ok)
		scpu = s_after.cpu_s - s_before.cpu_s;

	if (o.json) {
		printf("{\"label\":\"%s\",\"target\":\"%s:%s\",\"mode\":\"%s\",\"threads\":%d,"
		    "\"connections\":%d,\"rate\":%.1f,\"credentials\":%d,\"elapsed_s\":%.3f,"
		    "\"requests\":%ld,\"requests_per_s\":%.1f,\"handshakes\":%ld,"
		    "\"full_handshakes\":%ld,\"resumed_handshakes\":%ld,"
		    "\"handshakes_per_s\":%.1f,\"errors\":%ld,",
		    o.label ? o.label : "", o.host, o.port, mode_name(), o.threads,
		    o.connections, o.rate, ncreds, elapsed, ok, rps, full + resumed, full,
		    resumed, hps, errs);
		printf("\"warmup_full_handshakes\":%ld,\"warmup_resumed_handshakes\":%ld,",
		    wfull, wres);
		printf("\"errors_by_kind\":{");
		for (k = 0; k < E_COUNT; k++)
			printf("%s\"%s\":%ld", k ? "," : "", err_names[k], err[k]);
		printf("},\"unsent\":%ld,\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,"
		    "\"p99\":%.3f,\"p99.9\":%.3f,\"max\":%.3f},", unsent,
		    h_pct(h, 50) / 1e3, h_pct(h, 90) / 1e3, h_pct(h, 99) / 1e3,
		    h_pct(h, 99.9) / 1e3, h->max / 1e3);
		printf("\"client_cpu_s\":%.3f,\"server\":{\"pids\":%d,\"cpu_s\":%.3f,"
		    "\"cpu_us_per_request\":%.1f,\"cpu_us_per_handshake\":%.1f,"
		    "\"rss_kib_start\":%ld,\"rss_kib_before\":%ld,\"rss_kib_hold\":%ld,"
		    "\"rss_kib_after\":%ld}", ccpu, o.npids, scpu, ok ? scpu * 1e6 / ok : 0,
		    full + resumed ? scpu * 1e6 / (full + resumed) : 0, s_start.rss_kib,
		    s_before.rss_kib, s_hold.rss_kib, s_after.rss_kib);
		if (o.mode == MODE_IDLE)
			printf(",\"idle\":{\"wanted\":%d,\"established\":%ld,\"dropped\":%ld,"
			    "\"rss_kib_per_connection\":%.2f}", o.idle, established, dropped,
			    established > 0 ? (double)(s_hold.rss_kib - s_start.rss_kib) /
			    established : 0);
		printf("}\n");
	} else {
		printf("certgate-bench %s%s%s:%s  mode %s, %d threads, %d connections, %s, "
		    "%d credential(s)\n", o.label ? o.label : "", o.label ? "  " : "",
		    o.host, o.port, mode_name(), o.threads, o.connections,
		    o.rate > 0 ? "open loop" : "closed loop", ncreds);
		if (o.mode == MODE_IDLE) {
			printf("  idle          %ld of %d connections held %.1f s (%ld dropped)\n",
			    established, o.idle, o.duration, dropped);
			if (o.npids > 0 && established > 0)
				printf("  server rss    %ld KiB before, %ld KiB holding: %.2f KiB per "
				    "connection\n", s_start.rss_kib, s_hold.rss_kib,
				    (double)(s_hold.rss_kib - s_start.rss_kib) / established);
		} else {
			printf("  requests      %ld ok in %.2f s: %.1f requests/s%s\n", ok,
			    elapsed, rps, o.rate > 0 ? "" : "");
			if (o.rate > 0)
				printf("  schedule      %.1f requests/s offered, %ld never sent "
				    "(backlog at stop)\n", o.rate, unsent);
			printf("  handshakes    %ld full + %ld resumed: %.1f handshakes/s\n", full,
			    resumed, hps);
			printf("  latency ms    p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
			    h_pct(h, 50) / 1e3, h_pct(h, 90) / 1e3, h_pct(h, 99) / 1e3,
			    h_pct(h, 99.9) / 1e3, h->max / 1e3);
			if (o.npids > 0)
				printf("  server cpu    %.2f s: %.1f us/request%s%.1f us/handshake, "
				    "rss %ld KiB\n", scpu, ok ? scpu * 1e6 / ok : 0, ", ",
				    full + resumed ? scpu * 1e6 / (full + resumed) : 0,
				    s_after.rss_kib);
		}
		printf("  errors        %ld (", errs);
		for (k = 0; k < E_COUNT; k++)
			printf("%s%s %ld", k ? ", " : "", err_names[k], err[k]);
		printf(")\n  client cpu    %.2f s\n", ccpu);
	}
	if (o.mode == MODE_IDLE)
		return established > 0 && errs == 0 && dropped == 0 ? 0 : 1;
	return ok > 0 && errs == 0 ? 0 : 1;
}
