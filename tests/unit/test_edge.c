/* The edge identity forms: cidr.h (trusted ranges), proxyproto.h (PROXY v2 headers,
 * byte by byte), clientcert.h (RFC 9440 values decoded back to the DER). Table-driven. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base64.h"
#include "check.h"
#include "cidr.h"
#include "clientcert.h"
#include "proxyproto.h"

static const struct { const char *range, *addr; int match; } cidrs[] = {
	{ "127.0.0.1", "127.0.0.1", 1 },
	{ "127.0.0.1", "127.0.0.2", 0 },
	{ "127.0.0.0/8", "127.200.1.1", 1 },
	{ "10.0.0.0/8", "11.0.0.1", 0 },
	{ "192.168.4.0/22", "192.168.7.255", 1 },
	{ "192.168.4.0/22", "192.168.8.0", 0 },
	{ "0.0.0.0/0", "203.0.113.9", 1 },
	{ "10.1.2.0/24", "::ffff:10.1.2.3", 1 },    /* mapped form on a dual-stack socket */
	{ "10.1.2.0/24", "::ffff:10.1.3.3", 0 },
	{ "10.1.2.0/24", "::10.1.2.3", 0 },         /* compatible, not mapped */
	{ "::1", "::1", 1 },
	{ "::1", "127.0.0.1", 0 },
	{ "2001:db8::/32", "2001:db8:ffff::1", 1 },
	{ "2001:db8::/33", "2001:db8:8000::1", 0 },
	{ "fe80::/10", "febf::1", 1 },
	{ "fe80::/10", "fec0::1", 0 },
};

static const char *const bad_cidrs[] = {
	"", "/8", "10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/", "10.0.0.0/8x",
	"::1/129", "2001:db8::1/32", "localhost", "10.0.0", "1.2.3.4 ", "10.0.0.0/ 8",
};

static void
addr(const char *s, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &((struct sockaddr_in *)ss)->sin_addr) == 1)
		ss->ss_family = AF_INET;
	else if (inet_pton(AF_INET6, s, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1)
		ss->ss_family = AF_INET6;
}

static const unsigned char sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* A v2 header: ver_cmd, fam_proto, the address block and tlv_len extra bytes. */
static size_t
pp(unsigned char *out, unsigned ver_cmd, unsigned fam, const unsigned char *a, size_t alen,
    size_t tlv_len)
{
	size_t len = alen + tlv_len;

	memcpy(out, sig, 12);
	out[12] = (unsigned char)ver_cmd;
	out[13] = (unsigned char)fam;
	out[14] = (unsigned char)(len >> 8);
	out[15] = (unsigned char)len;
	memcpy(out + 16, a, alen);
	memset(out + 16 + alen, 0xee, tlv_len);
	return 16 + len;
}

/* Feeds h[0..n) to the parser the way conn.c does, growing by what it asks for;
 * returns its final result. */
static int
pp_feed(const unsigned char *h, size_t n, struct proxyproto *out, const char **err)
{
	size_t have = 1, need = 0;
	int rc;

	for (;;) {
		rc = proxyproto_parse(h, have, out, &need, err);
		if (rc != 0)
			return rc;
		if (need <= have || need > PROXYPROTO_MAX_ADDR || need > n)
			return -2;
		have = need;
	}
}

static void
test_proxyproto(void)
{
	static const unsigned char a4[12] = { 192, 0, 2, 7, 127, 0, 0, 1, 0x30, 0x39, 0x01, 0xbb };
	unsigned char a6[36], a_unix[216], h[1024];
	struct proxyproto p;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&p.src;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&p.src;
	const char *err;
	char ip[64];
	size_t n, need;

	n = pp(h, 0x21, 0x11, a4, sizeof(a4), 0);
	CHECK(pp_feed(h, n, &p, &err) == 1);
	CHECK(!p.local && p.total == 28 && p.src.ss_family == AF_INET);
	CHECK_STR(inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip)), "192.0.2.7");
	CHECK(ntohs(s4->sin_port) == 12345);
	CHECK(ntohs(((struct sockaddr_in *)&p.dst)->sin_port) == 443);

	/* TLVs: counted in total, not needed to decide */
	n = pp(h, 0x21, 0x11, a4, sizeof(a4), 500);
	CHECK(pp_feed(h, 28, &p, &err) == 1 && p.total == 528 && n == 528);

	memset(a6, 0, sizeof(a6));
	inet_pton(AF_INET6, "2001:db8::5", a6);
	a6[32] = 0x04, a6[33] = 0xd2;
	n = pp(h, 0x21, 0x21, a6, sizeof(a6), 0);
	CHECK(pp_feed(h, n, &p, &err) == 1 && p.src.ss_family == AF_INET6 && p.total == 52);
	CHECK_STR(inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip)), "2001:db8::5");
	CHECK(ntohs(s6->sin6_port) == 1234);

	/* LOCAL (health checks), UNSPEC and AF_UNIX keep the connection's addresses */
	n = pp(h, 0x20, 0x00, a4, 0, 0);
	CHECK(pp_feed(h, n, &p, &err) == 1 && p.local && p.total == 16);
	n = pp(h, 0x20, 0x11, a4, sizeof(a4), 0);
	CHECK(pp_feed(h, n, &p, &err) == 1 && p.local && p.total == 28);
	memset(a_unix, 0, sizeof(a_unix));
	n = pp(h, 0x21, 0x31, a_unix, sizeof(a_unix), 0);
	CHECK(pp_feed(h, n, &p, &err) == 1 && p.local && p.total == 232);

	/* refusals, each with a message */
	n = pp(h, 0x11, 0x11, a4, sizeof(a4), 0);          /* version 1 in the binary form */
	CHECK(pp_feed(h, n, &p, &err) == -1 && strstr(err, "version") != NULL);
	n = pp(h, 0x22, 0x11, a4, sizeof(a4), 0);          /* command 2 */
	CHECK(pp_feed(h, n, &p, &err) == -1 && strstr(err, "command") != NULL);
	n = pp(h, 0x21, 0x41, a4, sizeof(a4), 0);          /* family 4 */
	CHECK(pp_feed(h, n, &p, &err) == -1 && strstr(err, "family") != NULL);
	n = pp(h, 0x21, 0x12, a4, sizeof(a4), 0);          /* UDP */
	CHECK(pp_feed(h, n, &p, &err) == -1 && strstr(err, "TCP") != NULL);
	n = pp(h, 0x21, 0x21, a4, sizeof(a4), 0);          /* INET6 with 12 bytes */
	CHECK(pp_feed(h, n, &p, &err) == -1 && strstr(err, "too short") != NULL);
	memcpy(h, "PROXY TCP4 192.0.2.7 127.0.0.1 1 2\r\n", 36);
	CHECK(pp_feed(h, 36, &p, &err) == -1 && strstr(err, "version 1") != NULL);
	h[0] = 0x16, h[1] = 0x03, h[2] = 0x01;              /* a TLS ClientHello */
	CHECK(pp_feed(h, 3, &p, &err) == -1 && strstr(err, "does not start") != NULL);
	memcpy(h, sig, 12);
	h[5] = 'x';                                         /* broken signature */
	CHECK(pp_feed(h, 16, &p, &err) == -1);

	/* byte by byte: a prefix never decides early */
	n = pp(h, 0x21, 0x11, a4, sizeof(a4), 0);
	for (size_t k = 1; k < 28; k++)
		CHECK(proxyproto_parse(h, k, &p, &need, &err) == 0 && need > k);
	CHECK(proxyproto_looks_like(sig, 1) && proxyproto_looks_like((const unsigned char *)"PRO", 3));
	CHECK(!proxyproto_looks_like((const unsigned char *)"\x16\x03", 2));
}

static void
test_clientcert(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x[3];
	STACK_OF(X509) *chain = sk_X509_new_null();
	unsigned char *der;
	char *f, *c;
	struct buf b;
	int i, n;

	for (i = 0; i < 3; i++) {
		x[i] = X509_new();
		ASN1_INTEGER_set(X509_get_serialNumber(x[i]), i + 1);
		X509_NAME_add_entry_by_txt(X509_get_subject_name(x[i]), "CN", MBSTRING_ASC,
		    (const unsigned char *)(i == 0 ? "leaf" : i == 1 ? "issuing" : "root"), -1, -1, 0);
		X509_gmtime_adj(X509_getm_notBefore(x[i]), 0);
		X509_gmtime_adj(X509_getm_notAfter(x[i]), 3600);
		X509_set_pubkey(x[i], k);
		X509_sign(x[i], k, EVP_sha256());
		sk_X509_push(chain, x[i]);
	}
	f = clientcert_field(x[0]);
	CHECK(f != NULL && f[0] == ':' && f[strlen(f) - 1] == ':');
	buf_init(&b);
	CHECK(base64_decode(&b, f + 1, strlen(f) - 2, 0) == 0);
	der = NULL;
	n = i2d_X509(x[0], &der);
	CHECK(n > 0 && b.len == (size_t)n && memcmp(b.p, der, (size_t)n) == 0);
	OPENSSL_free(der);
	buf_free(&b);

	c = clientcert_chain_field(chain);
	CHECK(c != NULL && strstr(c, ":, :") != NULL);
	/* the chain lists 1 and 2, not the leaf */
	{
		char *f1 = clientcert_field(x[1]), *f2 = clientcert_field(x[2]), want[8192];

		snprintf(want, sizeof(want), "%s, %s", f1, f2);
		CHECK_STR(c, want);
		free(f1);
		free(f2);
	}
	free(c);
	sk_X509_pop(chain);
	sk_X509_pop(chain);
	c = clientcert_chain_field(chain);
	CHECK_STR(c, "");
	free(c);
	CHECK(clientcert_field(NULL) == NULL);
	free(f);
	sk_X509_free(chain);
	for (i = 0; i < 3; i++)
		X509_free(x[i]);
	EVP_PKEY_free(k);
}

int
main(void)
{
	struct sockaddr_storage ss;
	struct cidr r;
	const char *err;
	size_t i;

	for (i = 0; i < sizeof(cidrs) / sizeof(cidrs[0]); i++) {
		CHECK(cidr_parse(cidrs[i].range, &r, &err) == 0);
		addr(cidrs[i].addr, &ss);
		CHECK(ss.ss_family != 0);
		if (cidr_match(&r, &ss) != cidrs[i].match) {
			CHECK(!"cidr_match");
			fprintf(stderr, "  %s in %s: expected %d\n", cidrs[i].addr, cidrs[i].range,
			    cidrs[i].match);
		}
	}
	for (i = 0; i < sizeof(bad_cidrs) / sizeof(bad_cidrs[0]); i++) {
		err = NULL;
		CHECK(cidr_parse(bad_cidrs[i], &r, &err) == -1 && err != NULL);
	}
	test_proxyproto();
	test_clientcert();
	CHECK_DONE();
}
