/* tlsclient: a small OpenSSL client for the integration tests.
 *
 *   tlsclient --connect HOST:PORT --ca CA.pem [--cert C --key K] [--tls1.2|--tls1.3|
 *             --tls1.0|--tls1.1] [--sess-out F] [--sess-in F] [--request FILE]...
 *             [--repeat N] [--keepalive-gap-ms N] [--expect-resumed] [--timeout-ms N]
 *             [--wait-close-ms N] [--servername NAME]
 *
 * Performs the handshake, sends each request file (raw HTTP bytes) on the same
 * connection, and prints lines the shell tests grep for:
 *   handshake: ok | handshake: failed: <reason>
 *   protocol: TLSv1.3
 *   resumed: yes|no
 *   response: <status line>      followed by the body and a line "response-end"
 *   closed by peer               (and "closed-at-ms: <epoch ms>")
 *   still open                   (after --wait-close-ms without a close)
 * Exit: 0 ok, 1 handshake failed, 2 usage, 3 --expect-resumed not met,
 * 4 connection closed or failed before a complete response. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#define MAX_REQ 32

static SSL_SESSION *new_sess;
static int got_ticket;
static int timeout_ms = 5000;

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	SSL_SESSION_free(new_sess);
	new_sess = sess;	/* we keep the reference */
	got_ticket = 1;
	return 1;
}

/* The most useful reason for a failure: the OpenSSL error queue, else errno. */
static void
fail_reason(char *buf, size_t len, int sslerr)
{
	unsigned long e = ERR_peek_last_error();

	if (e != 0)
		snprintf(buf, len, "%s", ERR_reason_error_string(e) ?
		    ERR_reason_error_string(e) : "TLS error");
	else if (sslerr == SSL_ERROR_ZERO_RETURN)
		snprintf(buf, len, "closed by peer");
	else if (sslerr == SSL_ERROR_SYSCALL)
		snprintf(buf, len, "%s", errno ? strerror(errno) : "connection closed");
	else
		snprintf(buf, len, "SSL error %d", sslerr);
	ERR_clear_error();
}

/* Waits for the socket to become ready for what SSL asked; 0 on timeout. */
static int
wait_io(int fd, int sslerr, long long deadline)
{
	struct pollfd p = { .fd = fd };
	long long left = deadline - now_ms();

	if (left <= 0)
		return 0;
	p.events = sslerr == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
	return poll(&p, 1, (int)left) > 0;
}

static int
tcp_connect(const char *hostport)
{
	struct addrinfo hints, *res, *ai;
	char host[256], *colon;
	int fd = -1, rc;

	snprintf(host, sizeof(host), "%s", hostport);
	if ((colon = strrchr(host, ':')) == NULL) {
		fprintf(stderr, "tlsclient: --connect needs HOST:PORT\n");
		return -1;
	}
	*colon = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, colon + 1, &hints, &res)) != 0) {
		fprintf(stderr, "tlsclient: %s: %s\n", hostport, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol)) == -1)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1) {
		printf("connect: failed: %s\n", strerror(errno));
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/* Reads some bytes. >0 bytes, 0 closed (close_notify or EOF), -1 error (reason set),
 * -2 timeout. */
static int
ssl_read_some(SSL *ssl, int fd, char *buf, int len, long long deadline, char *why,
    size_t whylen, int stop_on_ticket)
{
	int r, err;

	for (;;) {
		ERR_clear_error();
		errno = 0;
		r = SSL_read(ssl, buf, len);
		if (r > 0)
			return r;
		err = SSL_get_error(ssl, r);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
			/* A ticket means the server accepted us; linger briefly for an
			 * immediate close or alert, then report. */
			if (stop_on_ticket && got_ticket && deadline > now_ms() + 50)
				deadline = now_ms() + 50;
			if (!wait_io(fd, err, deadline))
				return -2;
			continue;
		}
		if (err == SSL_ERROR_ZERO_RETURN ||
		    (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0))
			return 0;
		/* EOF without close_notify is reported as an SSL error in OpenSSL 3. */
		if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			ERR_clear_error();
			return 0;
		}
		fail_reason(why, whylen, err);
		return -1;
	}
}

static int
ssl_write_all(SSL *ssl, int fd, const char *buf, size_t len)
{
	long long deadline = now_ms() + timeout_ms;
	int r, err;

	while (len > 0) {
		ERR_clear_error();
		r = SSL_write(ssl, buf, (int)len);
		if (r > 0) {
			buf += r;
			len -= (size_t)r;
			continue;
		}
		err = SSL_get_error(ssl, r);
		if ((err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) &&
		    wait_io(fd, err, deadline))
			continue;
		return -1;
	}
	return 0;
}

struct rbuf {
	char *p;
	size_t len, cap;
};

static int
rbuf_add(struct rbuf *b, const char *s, size_t n)
{
	char *np;

	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		if ((np = realloc(b->p, b->cap)) == NULL)
			return -1;
		b->p = np;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static void
rbuf_consume(struct rbuf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
	b->p[b->len] = '\0';
}

/* Fills b until it holds at least need bytes (or until close when need is 0). */
static int
fill(SSL *ssl, int fd, struct rbuf *b, size_t need, int *closed, char *why, size_t wl)
{
	char tmp[16384];
	long long deadline = now_ms() + timeout_ms;
	int r;

	while (!*closed && (need == 0 || b->len < need)) {
		r = ssl_read_some(ssl, fd, tmp, sizeof(tmp), deadline, why, wl, 0);
		if (r == -2) {
			snprintf(why, wl, "timeout");
			return -1;
		}
		if (r == -1)
			return -1;
		if (r == 0) {
			*closed = 1;
			break;
		}
		if (rbuf_add(b, tmp, (size_t)r) == -1)
			return -1;
	}
	return need == 0 || b->len >= need ? 0 : -1;
}

static char *
find_head_end(struct rbuf *b)
{
	return b->len ? strstr(b->p, "\r\n\r\n") : NULL;
}

/* Reads one HTTP response, prints it. Returns 0, or -1 (closed/failed). */
static int
read_response(SSL *ssl, int fd, struct rbuf *b, int *closed, int head_only)
{
	char why[256] = "", *end, *line_end, *h;
	long clen = -1;
	int chunked = 0, status = 0;
	size_t hlen, blen = 0;

	while ((end = find_head_end(b)) == NULL) {
		size_t before = b->len;
		if (fill(ssl, fd, b, b->len + 1, closed, why, sizeof(why)) == -1 ||
		    b->len == before) {
			if (why[0] && strcmp(why, "timeout") != 0)
				printf("error: %s\n", why);
			else if (why[0])
				printf("error: timeout waiting for a response\n");
			return -1;
		}
	}
	hlen = (size_t)(end - b->p) + 4;
	line_end = strstr(b->p, "\r\n");
	printf("response: %.*s\n", (int)(line_end - b->p), b->p);
	sscanf(b->p, "HTTP/%*s %d", &status);
	for (h = line_end + 2; h < end; h = strstr(h, "\r\n") + 2) {
		if (strncasecmp(h, "Content-Length:", 15) == 0)
			clen = strtol(h + 15, NULL, 10);
		else if (strncasecmp(h, "Transfer-Encoding:", 18) == 0 &&
		    strstr(h, "chunked") != NULL && strstr(h, "chunked") < strstr(h, "\r\n"))
			chunked = 1;
		else if (strncasecmp(h, "Retry-After:", 12) == 0 ||
		    strncasecmp(h, "Content-Type:", 13) == 0 ||
		    strncasecmp(h, "Mcp-Session-Id:", 15) == 0 ||
		    strncasecmp(h, "Strict-Transport-Security:", 26) == 0)
			printf("header: %.*s\n", (int)(strstr(h, "\r\n") - h), h);
	}
	rbuf_consume(b, hlen);
	if (head_only || status == 204 || status == 304 || (status >= 100 && status < 200))
		clen = 0;
	if (chunked) {
		for (;;) {
			char *crlf;
			long n;
			while ((crlf = strstr(b->p ? b->p : "", "\r\n")) == NULL)
				if (fill(ssl, fd, b, b->len + 1, closed, why, sizeof(why)) == -1)
					goto trunc;
			n = strtol(b->p, NULL, 16);
			rbuf_consume(b, (size_t)(crlf - b->p) + 2);
			if (n == 0) {
				/* trailers: until an empty line */
				while ((crlf = strstr(b->p ? b->p : "", "\r\n")) == NULL)
					if (fill(ssl, fd, b, b->len + 1, closed, why,
					    sizeof(why)) == -1)
						goto trunc;
				rbuf_consume(b, (size_t)(crlf - b->p) + 2);
				break;
			}
			if (fill(ssl, fd, b, (size_t)n + 2, closed, why, sizeof(why)) == -1)
				goto trunc;
			fwrite(b->p, 1, (size_t)n, stdout);
			blen += (size_t)n;
			rbuf_consume(b, (size_t)n + 2);
		}
	} else if (clen >= 0) {
		if (fill(ssl, fd, b, (size_t)clen, closed, why, sizeof(why)) == -1)
			goto trunc;
		fwrite(b->p, 1, (size_t)clen, stdout);
		blen = (size_t)clen;
		rbuf_consume(b, (size_t)clen);
	} else {
		fill(ssl, fd, b, 0, closed, why, sizeof(why));
		fwrite(b->p ? b->p : "", 1, b->len, stdout);
		blen = b->len;
		rbuf_consume(b, b->len);
	}
	if (blen > 0)
		printf("\n");
	printf("response-end\n");
	fflush(stdout);
	return 0;
trunc:
	printf("\nerror: response truncated (%s)\n", why[0] ? why : "closed");
	return -1;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	long n;

	if (f == NULL) {
		fprintf(stderr, "tlsclient: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (p = malloc((size_t)n + 1)) != NULL) {
		*len = fread(p, 1, (size_t)n, f);
		p[*len] = '\0';
	}
	fclose(f);
	return p;
}

static void
usage(void)
{
	fprintf(stderr, "usage: tlsclient --connect HOST:PORT --ca CA.pem [--cert C --key K]\n"
	    "  [--tls1.2|--tls1.3|--tls1.0|--tls1.1] [--sess-out F] [--sess-in F]\n"
	    "  [--request FILE]... [--repeat N] [--keepalive-gap-ms N] [--expect-resumed]\n"
	    "  [--timeout-ms N] [--probe-ms N] [--wait-close-ms N] [--servername NAME]\n");
}

struct opts {
	const char *connect, *ca, *cert, *key, *sess_out, *sess_in, *sni;
	const char *req[MAX_REQ];
	int nreq, version, repeat, gap_ms, expect_resumed, probe_ms, wait_close_ms;
};

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "ca", required_argument, NULL, 'a' },
		{ "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'K' },
		{ "tls1.0", no_argument, NULL, '0' },
		{ "tls1.1", no_argument, NULL, '1' },
		{ "tls1.2", no_argument, NULL, '2' },
		{ "tls1.3", no_argument, NULL, '3' },
		{ "sess-out", required_argument, NULL, 'o' },
		{ "sess-in", required_argument, NULL, 'i' },
		{ "request", required_argument, NULL, 'r' },
		{ "repeat", required_argument, NULL, 'R' },
		{ "keepalive-gap-ms", required_argument, NULL, 'g' },
		{ "expect-resumed", no_argument, NULL, 'e' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "probe-ms", required_argument, NULL, 'p' },
		{ "wait-close-ms", required_argument, NULL, 'w' },
		{ "servername", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(o, 0, sizeof(*o));
	o->repeat = 1;
	o->probe_ms = 1000;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'c': o->connect = optarg; break;
		case 'a': o->ca = optarg; break;
		case 'C': o->cert = optarg; break;
		case 'K': o->key = optarg; break;
		case '0': o->version = TLS1_VERSION; break;
		case '1': o->version = TLS1_1_VERSION; break;
		case '2': o->version = TLS1_2_VERSION; break;
		case '3': o->version = TLS1_3_VERSION; break;
		case 'o': o->sess_out = optarg; break;
		case 'i': o->sess_in = optarg; break;
		case 'r':
			if (o->nreq == MAX_REQ)
				return -1;
			o->req[o->nreq++] = optarg;
			break;
		case 'R': o->repeat = atoi(optarg); break;
		case 'g': o->gap_ms = atoi(optarg); break;
		case 'e': o->expect_resumed = 1; break;
		case 't': timeout_ms = atoi(optarg); break;
		case 'p': o->probe_ms = atoi(optarg); break;
		case 'w': o->wait_close_ms = atoi(optarg); break;
		case 's': o->sni = optarg; break;
		default: return -1;
		}
	}
	if (o->connect == NULL || o->ca == NULL || (o->cert == NULL) != (o->key == NULL))
		return -1;
	return 0;
}

static SSL_CTX *
make_ctx(const struct opts *o)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	if (o->version) {
		SSL_CTX_set_min_proto_version(ctx, o->version);
		SSL_CTX_set_max_proto_version(ctx, o->version);
		if (o->version < TLS1_2_VERSION)
			/* Let the client really offer the old protocol: the test is
			 * that the server refuses it, not that we do. */
			SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
	} else
		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
		fprintf(stderr, "tlsclient: cannot load CA %s\n", o->ca);
		goto fail;
	}
	if (o->cert != NULL && (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1)) {
		fprintf(stderr, "tlsclient: cannot load %s / %s\n", o->cert, o->key);
		ERR_print_errors_fp(stderr);
		goto fail;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static int
load_session(SSL *ssl, const char *path)
{
	SSL_SESSION *s;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		fprintf(stderr, "tlsclient: %s: %s\n", path, strerror(errno));
		return -1;
	}
	s = PEM_read_SSL_SESSION(f, NULL, NULL, NULL);
	fclose(f);
	if (s == NULL || SSL_set_session(ssl, s) != 1) {
		fprintf(stderr, "tlsclient: cannot use session from %s\n", path);
		SSL_SESSION_free(s);
		return -1;
	}
	SSL_SESSION_free(s);
	return 0;
}

static void
save_session(SSL *ssl, const char *path)
{
	SSL_SESSION *s = new_sess ? new_sess : SSL_get0_session(ssl);
	FILE *f;

	if (s == NULL || !SSL_SESSION_is_resumable(s)) {
		printf("session: none\n");
		return;
	}
	if ((f = fopen(path, "w")) == NULL) {
		fprintf(stderr, "tlsclient: %s: %s\n", path, strerror(errno));
		return;
	}
	PEM_write_SSL_SESSION(f, s);
	fclose(f);
	printf("session: saved\n");
}

/* TLS 1.3 clients finish before the server has checked their certificate: wait
 * briefly for the server's verdict (a ticket means accepted, an alert refused). */
static int
probe(SSL *ssl, int fd, int ms, struct rbuf *b, int *closed, char *why, size_t wl)
{
	long long deadline = now_ms() + ms, extra = 0;
	char tmp[4096];
	int r;

	if (SSL_version(ssl) != TLS1_3_VERSION)
		return 0;
	for (;;) {
		long long dl = deadline;
		if (got_ticket) {
			if (extra == 0)
				extra = now_ms() + 50;
			dl = extra;
		}
		r = ssl_read_some(ssl, fd, tmp, sizeof(tmp), dl, why, wl, 1);
		if (r == -2)
			return 0;
		if (r == -1)
			return -1;
		if (r == 0) {
			*closed = 1;
			return 0;
		}
		rbuf_add(b, tmp, (size_t)r);
	}
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct rbuf b = { 0 };
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	char why[256] = "";
	long long deadline;
	int fd = -1, r, err, rc = 4, i, k, closed = 0, resumed, nresp = 0;

	if (parse_opts(argc, argv, &o) == -1) {
		usage();
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((ctx = make_ctx(&o)) == NULL)
		return 2;
	if ((fd = tcp_connect(o.connect)) == -1)
		goto out;
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, (char *)(o.sni ? o.sni : "localhost"));
	if (o.sess_in != NULL && load_session(ssl, o.sess_in) == -1) {
		rc = 2;
		goto out;
	}
	deadline = now_ms() + timeout_ms;
	for (;;) {
		ERR_clear_error();
		errno = 0;
		if ((r = SSL_connect(ssl)) == 1)
			break;
		err = SSL_get_error(ssl, r);
		if ((err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)) {
			if (wait_io(fd, err, deadline))
				continue;
			printf("handshake: failed: timeout\n");
			rc = 1;
			goto out;
		}
		fail_reason(why, sizeof(why), err);
		printf("handshake: failed: %s\n", why);
		rc = 1;
		goto out;
	}
	resumed = SSL_session_reused(ssl);
	if (probe(ssl, fd, o.probe_ms, &b, &closed, why, sizeof(why)) == -1) {
		printf("handshake: failed: %s\n", why);
		printf("resumed: %s\n", resumed ? "yes" : "no");
		rc = 1;
		goto out;
	}
	printf("handshake: ok\nprotocol: %s\nresumed: %s\n", SSL_get_version(ssl),
	    resumed ? "yes" : "no");
	if (o.sess_out != NULL)
		save_session(ssl, o.sess_out);
	rc = 0;
	for (k = 0; k < o.repeat && !closed; k++) {
		for (i = 0; i < o.nreq && !closed; i++) {
			size_t len = 0;
			char *req = slurp(o.req[i], &len);
			int head = req != NULL && strncmp(req, "HEAD ", 5) == 0;

			if (req == NULL) {
				rc = 2;
				goto out;
			}
			if ((k > 0 || i > 0) && o.gap_ms > 0)
				usleep((useconds_t)o.gap_ms * 1000);
			if (ssl_write_all(ssl, fd, req, len) == -1) {
				free(req);
				printf("error: write failed\n");
				closed = 1;
				rc = 4;
				break;
			}
			free(req);
			if (read_response(ssl, fd, &b, &closed, head) == -1) {
				closed = 1;
				break;
			}
			nresp++;
		}
	}
	if (!closed && o.wait_close_ms > 0) {
		char tmp[4096];
		deadline = now_ms() + o.wait_close_ms;
		for (;;) {
			r = ssl_read_some(ssl, fd, tmp, sizeof(tmp), deadline, why, sizeof(why), 0);
			if (r > 0)
				continue;
			if (r == -2) {
				printf("still open\n");
				break;
			}
			closed = 1;
			break;
		}
	}
	if (closed)
		printf("closed by peer\nclosed-at-ms: %lld\n", now_ms());
	if (rc == 0 && nresp < o.nreq * o.repeat)
		rc = 4;
	if (o.expect_resumed && !resumed && rc == 0)
		rc = 3;
out:
	if (ssl != NULL) {
		if (!closed)
			SSL_shutdown(ssl);
		SSL_free(ssl);
	}
	if (fd != -1)
		close(fd);
	SSL_SESSION_free(new_sess);
	SSL_CTX_free(ctx);
	free(b.p);
	return rc;
}
