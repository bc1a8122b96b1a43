/* Enrollment tokens, agent side (see include/agent_token.h for the format). */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "agent_token.h"
#include "text.h"

#define TOKEN_PREFIX     "cg1."
#define TOKEN_PREFIX_LEN 4
#define TOKEN_HEX_LEN    64
#define TOKEN_SECRET_LEN 43

static int
agent_token_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Value of a base64url digit (RFC 4648 section 5), -1 for anything else. */
static int
agent_token_b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

int
agent_token_parse(const char *tok, unsigned char fp[AGENT_TOKEN_FP_LEN], char *err,
    size_t errlen)
{
	const char *hex, *sec;
	size_t len, i;
	int hi, lo, v;

	if (errlen > 0)
		err[0] = '\0';
	len = tok != NULL ? strlen(tok) : 0;
	if (len < TOKEN_PREFIX_LEN || memcmp(tok, TOKEN_PREFIX, TOKEN_PREFIX_LEN) != 0) {
		snprintf(err, errlen, "enrollment token does not start with \"%s\" "
		    "(a token from scripts/agent-token looks like cg1.<64 hex>.<43 chars>)",
		    TOKEN_PREFIX);
		return -1;
	}
	if (len != AGENT_TOKEN_LEN) {
		snprintf(err, errlen, "enrollment token has %zu characters, want %d "
		    "(truncated or pasted with something else?)", len, AGENT_TOKEN_LEN);
		return -1;
	}
	hex = tok + TOKEN_PREFIX_LEN;
	for (i = 0; i < AGENT_TOKEN_FP_LEN; i++) {
		hi = agent_token_hexval(hex[2 * i]);
		lo = agent_token_hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			snprintf(err, errlen, "enrollment token: character %zu is not a "
			    "lowercase hex digit of the CA fingerprint",
			    TOKEN_PREFIX_LEN + 2 * i + (hi < 0 ? 1 : 2));
			return -1;
		}
		fp[i] = (unsigned char)(hi << 4 | lo);
	}
	if (hex[TOKEN_HEX_LEN] != '.') {
		snprintf(err, errlen, "enrollment token: character %d must be '.'",
		    TOKEN_PREFIX_LEN + TOKEN_HEX_LEN + 1);
		return -1;
	}
	sec = hex + TOKEN_HEX_LEN + 1;
	for (i = 0; i < TOKEN_SECRET_LEN; i++) {
		if ((v = agent_token_b64val(sec[i])) < 0) {
			snprintf(err, errlen, "enrollment token: character %zu is not "
			    "base64url (A-Z a-z 0-9 - _)",
			    (size_t)(sec - tok) + i + 1);
			return -1;
		}
	}
	/* 43 digits carry 258 bits for 256: the last digit's two low bits are zero
	 * in the only encoding of 32 bytes. Anything else is not a token we issued. */
	if ((agent_token_b64val(sec[TOKEN_SECRET_LEN - 1]) & 0x3) != 0) {
		snprintf(err, errlen, "enrollment token: the secret is not the "
		    "base64url encoding of 32 bytes (last character)");
		return -1;
	}
	return 0;
}

int
agent_token_fingerprint(X509 *cert, unsigned char fp[AGENT_TOKEN_FP_LEN])
{
	unsigned int n = 0;

	if (cert == NULL || X509_digest(cert, EVP_sha256(), fp, &n) != 1 ||
	    n != AGENT_TOKEN_FP_LEN)
		return -1;
	return 0;
}

int
agent_token_find(STACK_OF(X509) *certs, const unsigned char fp[AGENT_TOKEN_FP_LEN])
{
	unsigned char got[AGENT_TOKEN_FP_LEN];
	int i;

	for (i = 0; certs != NULL && i < sk_X509_num(certs); i++)
		if (agent_token_fingerprint(sk_X509_value(certs, i), got) == 0 &&
		    memcmp(got, fp, AGENT_TOKEN_FP_LEN) == 0)
			return i;
	return -1;
}

void
agent_token_hex(const unsigned char fp[AGENT_TOKEN_FP_LEN], char out[65])
{
	text_hex(fp, AGENT_TOKEN_FP_LEN, out);
}
