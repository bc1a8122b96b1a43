/* Distinguished names in RFC 4514 text: one normalized form for names written by
 * people (the identity map's "subject" and "issuer") and names read from
 * certificates, so that comparing two DNs is comparing two strings.
 *
 * The form is the one OpenSSL prints with XN_FLAG_RFC2253: most specific RDN first,
 * attribute types as OpenSSL's short names ("CN", "O", "OU", "DC", "emailAddress")
 * or a dotted OID for types OpenSSL does not know, RDNs joined by ',' and the
 * attributes of a multi-valued RDN by '+', values as UTF-8 with , + " \ < > ;
 * backslash-escaped, a leading '#' or space and a trailing space backslash-escaped,
 * control bytes and every byte >= 0x80 written \XX (uppercase hex); values of a
 * non-string type, and of unknown attribute types, as '#' and the DER in uppercase
 * hex. One difference: the attributes of a multi-valued RDN are sorted (by their
 * formatted text), so that "CN=a+UID=b" and "UID=b+CN=a" are the same name.
 *
 * Pure: no I/O, no global state (OpenSSL's object table is read-only); thread-safe.
 * Returned strings are malloc'd and owned by the caller. */
#ifndef CERTGATE_DN_H
#define CERTGATE_DN_H
#include <openssl/x509.h>
#include <stddef.h>

/* Parses s[0..len) as a strict RFC 4514 DN and writes its normalized form to *out.
 * Accepted: attribute types as names (case-insensitive: "cn", "commonName") or
 * dotted OIDs, values with RFC 4514 escapes (\, \+ ... and \XX hex pairs) or as
 * #HEX DER (a DER string type becomes its text). Refused, with the reason in err:
 * the empty DN, spaces around '=' or after ',' ("CN = x", "CN=x, O=y"), OpenSSL's
 * "/CN=x/O=y" form (named as such), unescaped specials, bad escapes, values that
 * are not UTF-8, a NUL byte, an unknown attribute type with a text value (OpenSSL
 * would print such a value as #DER, so it could never match). Returns 0/-1. */
int dn_parse(const char *s, size_t len, char **out, char *err, size_t errlen);

/* The normalized RFC 4514 form of name (see above), or NULL when a value cannot be
 * decoded (e.g. a BMPString of odd length) or memory ran out. An empty name gives "". */
char *dn_format(const X509_NAME *name);

#endif
