/* Identity: the agent map (agents.json) and the certificate -> agent lookup.
 * Pure functions, no I/O except identity_map_load reading one file. A loaded map is
 * immutable and may be shared read-only by every worker thread. */
#ifndef CERTGATE_IDENTITY_H
#define CERTGATE_IDENTITY_H
#include <openssl/x509.h>
#include <stddef.h>

struct argrule_set;   /* argrule.h */
struct identity_parse; /* identity.c */

struct identity_agent {
	char *id;
	char *uri;            /* SAN URI to match, or NULL */
	char *subject;        /* RFC 4514 subject to match (normalized, dn.h), or NULL */
	char *issuer;         /* "issuer": only certificates from that issuer (normalized
	                       * RFC 4514) match; NULL: only those of certgate's own CA */
	char **roles;
	size_t nroles;
	char **scopes;        /* effective: own scopes plus every role's, deduplicated */
	size_t nscopes;
	char *scopes_str;     /* the same, space-separated (X-Agent-Scopes) */
	double rate_per_second; /* 0 when the map gives none (use the config default) */
	double rate_burst;      /* "rate.burst", default max(1, per_second) */
	/* Tool-argument rules that apply to this agent (argrule.h): its own "arguments"
	 * first, then each role's in the order listed, without duplicates; NULL/0 when
	 * none. Pass both to argrule_check for every tools/call. The sets are owned by
	 * the map and live as long as it. */
	struct argrule_set **argrules;
	size_t nargrules;
};

struct identity_map {
	struct identity_agent *agents;
	size_t nagents;
	/* private: lookup index */
	void *index;
	/* private: every compiled argument-rule set (roles' and agents'), owned */
	struct argrule_set **rulesets;
	size_t nrulesets;
	/* private: the text being parsed (NULL once parsed) */
	struct identity_parse *parse;
};

/* Parses an identity map. Validates: roles is an object whose values are scope arrays
 * or objects {"scopes": [...], "arguments": {...}} (both members optional), agents an
 * array of objects with a unique non-empty id, at least one of uri/subject, roles
 * that exist, scopes that are well-formed (see policy.h), rate numbers > 0, argument
 * rules that compile (argrule_set_parse; the message names the role or agent, the
 * tool glob and the argument); "subject" and "issuer" strict RFC 4514 (dn_parse; the
 * message names the agent and the line); uri and subject values unique across the
 * agents of one issuer. Returns 0
 * and *out, or -1 with a message (including the JSON line when jansson knows it) in err.
 * Strict: unknown keys (top level, role, agent, rate) and duplicate JSON keys are errors.
 * An id is 1-128 printable ASCII characters without space / \ " , ; =.
 * "rate" is {"per_second": >0, "burst": >=1 (optional)}. Effective scopes are the
 * agent's own scopes, then each role's in the order listed, without duplicates.
 * Lookups (identity_lookup, identity_find_id) are hash-indexed: O(1) per call. */
int identity_map_parse(const char *json, size_t len, struct identity_map **out,
    char *err, size_t errlen);
int identity_map_load(const char *path, struct identity_map **out, char *err, size_t errlen);
void identity_map_free(struct identity_map *m);

/* What the gateway knows about a verified client certificate. */
struct identity_peer {
	char serial[80];      /* uppercase hex, no separators */
	char *subject;        /* RFC 4514, e.g. "CN=research-bot,O=Example" */
	char *issuer;         /* the certificate's issuer DN, RFC 4514 */
	int own_ca;           /* issued by certgate's own CA (identity_peer_own_ca) */
	char **uris;          /* SAN URIs */
	size_t nuris;
	char hash[65];        /* SHA-256 of the DER certificate, lowercase hex (XFCC Hash) */
	long long not_after;  /* time_t of notAfter */
};

/* The subject/issuer string certgate uses everywhere (identity map "subject", audit,
 * XFCC): X509_NAME_print_ex with XN_FLAG_RFC2253, i.e. RFC 4514 order, most specific
 * RDN first ("CN=research-bot,O=certgate"), non-ASCII and control bytes escaped.
 * Returns a malloc'd string or NULL. */
char *identity_name_rfc4514(const X509_NAME *name);

/* Fills p from a certificate. serial is BN_bn2hex of the serial number: uppercase hex,
 * whole bytes (so "0A", never "A"), no separators — the CA writes serials the same way.
 * SAN URIs that are not printable ASCII without spaces are skipped.
 * Returns 0/-1. Free with identity_peer_clear. */
int identity_peer_from_cert(X509 *cert, struct identity_peer *p);
void identity_peer_clear(struct identity_peer *p);

/* Sets p->own_ca: 1 when cert was issued (issuer name, key identifier and signature)
 * by one of the CA certificates own (certgate's own CA; during a rollover there may
 * be several). The signature check costs one verification: call once per
 * certificate, not per lookup. Returns p->own_ca. */
int identity_peer_own_ca(struct identity_peer *p, X509 *cert, STACK_OF(X509) *own);
/* The same from a chain X509_verify_cert built for the certificate (leaf first): its
 * issuer is chain[1], whose signature on the leaf was verified then, so no
 * verification is needed; 1 when chain[1] is one of own (same DER). A chain of
 * fewer than two certificates is never own. Returns p->own_ca. */
int identity_peer_own_ca_chain(struct identity_peer *p, STACK_OF(X509) *chain,
    STACK_OF(X509) *own);

/* The agent whose uri equals one of the peer's SAN URIs, else whose subject equals
 * the peer's subject; NULL when none. Issuer binding: an agent with "issuer" matches
 * only a peer whose issuer DN equals it; an agent without matches only a peer with
 * own_ca set. When both kinds would match, the one with "issuer" wins. The pointer
 * lives as long as the map. */
const struct identity_agent *identity_lookup(const struct identity_map *m,
    const struct identity_peer *p);
/* The agent with that id, or NULL (the admin status page). */
const struct identity_agent *identity_find_id(const struct identity_map *m, const char *id);

/* Envoy-style X-Forwarded-Client-Cert value: Hash=...;Subject="...";URI=...
 * (quotes and backslashes escaped). Returns malloc'd string or NULL. */
char *identity_xfcc(const struct identity_peer *p);

#endif
