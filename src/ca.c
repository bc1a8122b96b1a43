/* `certgate ca init|server|issue|renew|revoke|crl|list|token|import|rollover|retire|
 * serve`: the command table, argument parsing and dispatch, and the two commands that
 * only read or re-sign (crl, list). The others live in casetup.c (init, server),
 * caagent.c (issue, renew, revoke, token), caimport.c (import) and caroll.c
 * (rollover, retire); caserve.c is the CA service. cabundle.c reads ca.cert as a
 * bundle (the active CA, CAs still trusted after a rollover, a corporate chain). The work is done by castore.c
 * (the CA's files, changed under the CA lock, crash-safe), certify.c (what is
 * signed), cadb.c (the database) and catoken.c (enrollment tokens). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/x509.h>

#include "ca.h"
#include "caagent.h"
#include "caimport.h"
#include "caroll.h"
#include "cacli.h"
#include "cadb.h"
#include "caserve.h"
#include "casetup.h"
#include "castore.h"
#include "catime.h"
#include "certify.h"
#include "config.h"
#include "dn.h"
#include "identity.h"
#include "p11.h"

#define CA_MAX_CRL_HOURS	87600

/* ------------------------------------------------------------------------ */
/* Arguments                                                                */
/* ------------------------------------------------------------------------ */

enum {
	O_CONFIG, O_HELP, O_SUBJECT, O_FORCE, O_DNS, O_IP, O_AGENT, O_ROLE, O_SCOPE,
	O_HOURS, O_LIFETIME, O_TTL, O_CSR, O_OUT, O_SERIAL, O_REASON, O_JSON, O_AGENTS,
	O_REVOKE_OLD, O_WATCH_FD, O_INTERMEDIATE, O_CERT, O_CHAIN, O_CRLFILE, O_COUNT
};

static const struct option ca_all_opts[O_COUNT] = {
	[O_CONFIG] = { "config", required_argument, NULL, 'c' },
	[O_HELP] = { "help", no_argument, NULL, 'h' },
	[O_SUBJECT] = { "subject", required_argument, NULL, 256 + O_SUBJECT },
	[O_FORCE] = { "force", no_argument, NULL, 256 + O_FORCE },
	[O_DNS] = { "dns", required_argument, NULL, 256 + O_DNS },
	[O_IP] = { "ip", required_argument, NULL, 256 + O_IP },
	[O_AGENT] = { "agent", required_argument, NULL, 256 + O_AGENT },
	[O_ROLE] = { "role", required_argument, NULL, 256 + O_ROLE },
	[O_SCOPE] = { "scope", required_argument, NULL, 256 + O_SCOPE },
	[O_HOURS] = { "hours", required_argument, NULL, 256 + O_HOURS },
	[O_LIFETIME] = { "lifetime", required_argument, NULL, 256 + O_LIFETIME },
	[O_TTL] = { "ttl", required_argument, NULL, 256 + O_TTL },
	[O_CSR] = { "csr", required_argument, NULL, 256 + O_CSR },
	[O_OUT] = { "out", required_argument, NULL, 256 + O_OUT },
	[O_SERIAL] = { "serial", required_argument, NULL, 256 + O_SERIAL },
	[O_REASON] = { "reason", required_argument, NULL, 256 + O_REASON },
	[O_JSON] = { "json", no_argument, NULL, 256 + O_JSON },
	[O_AGENTS] = { "agents", no_argument, NULL, 256 + O_AGENTS },
	[O_REVOKE_OLD] = { "revoke-old", no_argument, NULL, 256 + O_REVOKE_OLD },
	[O_WATCH_FD] = { "watch-fd", required_argument, NULL, 256 + O_WATCH_FD },
	[O_INTERMEDIATE] = { "intermediate", no_argument, NULL, 256 + O_INTERMEDIATE },
	[O_CERT] = { "cert", required_argument, NULL, 256 + O_CERT },
	[O_CHAIN] = { "chain", required_argument, NULL, 256 + O_CHAIN },
	[O_CRLFILE] = { "crl", required_argument, NULL, 256 + O_CRLFILE },
};

#define B(o) (1u << (o))


struct ca_cmd {
	const char *name;
	unsigned opts;
	int (*run)(struct config *, struct cacli_args *);
	const char *usage;
};

static int ca_cmd_crl(struct config *, struct cacli_args *);
static int ca_cmd_list(struct config *, struct cacli_args *);
static int ca_cmd_serve(struct config *, struct cacli_args *);

#define LIFETIME_HELP \
    "  --lifetime D   certificate lifetime Nm, Nh or Nd, 2m..365d\n" \
    "  --hours N      the same as --lifetime Nh\n"

static const struct ca_cmd ca_cmds[] = {
	{ "init", B(O_SUBJECT) | B(O_FORCE) | B(O_INTERMEDIATE), casetup_init,
	    "usage: certgate ca init -c CONFIG [--subject DN] [--intermediate] [--force]\n\n"
	    "Generates the CA key inside the CA token (EC P-256, sensitive, not extractable)\n"
	    "at ca.key, writes the self-signed CA certificate (ca.cert, valid ca_days),\n"
	    "an empty database, the CRL number and the first (empty) CRL.\n\n"
	    "  --subject DN   CA subject, \"CN=...,O=...\" (default \"" CASETUP_CA_SUBJECT "\")\n"
	    "  --intermediate write a certificate request (ca.csr next to ca.cert, signed in\n"
	    "                 the token) for a corporate CA to sign instead of a self-signed\n"
	    "                 CA; then certgate ca import\n"
	    "  --force        replace an existing CA certificate file; a key that already\n"
	    "                 exists in the token is never overwritten (re-create the token)\n" },
	{ "server", B(O_DNS) | B(O_IP), casetup_server,
	    "usage: certgate ca server -c CONFIG [--dns NAME]... [--ip ADDR]...\n\n"
	    "Generates the server key in the gateway's token at tls.key (or reuses it when it\n"
	    "already exists) and issues the server certificate to tls.cert: SAN DNS:localhost,\n"
	    "IP:127.0.0.1 and the names given, serverAuth, valid server_days.\n\n"
	    "  --dns NAME     extra DNS subjectAltName (repeatable)\n"
	    "  --ip ADDR      extra IP subjectAltName, IPv4 or IPv6 (repeatable)\n" },
	{ "issue", B(O_AGENT) | B(O_ROLE) | B(O_SCOPE) | B(O_HOURS) | B(O_LIFETIME) | B(O_CSR) |
	    B(O_OUT), caagent_issue,
	    "usage: certgate ca issue -c CONFIG --agent ID [--role ROLE]... [--scope SCOPE]...\n"
	    "                         [--lifetime D] [--csr FILE] [--out DIR]\n\n"
	    "Issues a client certificate for agent ID (subject CN=ID, SAN URI\n"
	    "spiffe://TRUST_DOMAIN/agent/ID, clientAuth) signed in the token, records it in\n"
	    "the CA database and adds or updates the agent in the identity map. Prints the\n"
	    "serial number (hex) on stdout. An agent that has a valid certificate is renewed\n"
	    "(certgate ca renew), not issued again.\n\n"
	    "  --agent ID     [A-Za-z0-9][A-Za-z0-9._-]{0,63}\n"
	    "  --role ROLE    role from the identity map (repeatable; replaces the agent's\n"
	    "                 roles; without --role an existing agent keeps its roles)\n"
	    "  --scope SCOPE  extra scope (repeatable; same replacement rule)\n"
	    LIFETIME_HELP
	    "                 (default ca.default_hours)\n"
	    "  --csr FILE     certify the key of this PKCS#10 request (PEM or DER); its\n"
	    "                 subject is ignored. Without --csr an EC P-256 key is generated\n"
	    "                 and written to DIR/key.pem (0600)\n"
	    "  --out DIR      output directory (default ca.agents_dir/ID)\n" },
	{ "renew", B(O_AGENT) | B(O_HOURS) | B(O_LIFETIME) | B(O_CSR) | B(O_OUT) | B(O_REVOKE_OLD),
	    caagent_renew,
	    "usage: certgate ca renew -c CONFIG --agent ID [--lifetime D] [--csr FILE]\n"
	    "                         [--revoke-old] [--out DIR]\n\n"
	    "Issues a new certificate for an agent that has a valid one: same identity, roles\n"
	    "and scopes, the same key (unless --csr) and the same lifetime (unless\n"
	    "--lifetime). The old certificate stays valid until it expires unless\n"
	    "--revoke-old. Writes DIR/cert.pem and prints the new serial.\n\n"
	    "  --agent ID     the agent\n"
	    LIFETIME_HELP
	    "  --csr FILE     certify this request's key instead of the current one\n"
	    "  --revoke-old   revoke the agent's other valid certificates (superseded)\n"
	    "  --out DIR      output directory (default ca.agents_dir/ID)\n" },
	{ "revoke", B(O_SERIAL) | B(O_AGENT) | B(O_REASON), caagent_revoke,
	    "usage: certgate ca revoke -c CONFIG (--serial HEX | --agent ID) [--reason R]\n\n"
	    "Marks the certificate (or every valid certificate of the agent) revoked in the\n"
	    "database and re-signs the CRL in the token. Prints the revoked serial(s); a\n"
	    "certificate that is already revoked is left as it is (exit 0, with a note).\n\n"
	    "  --reason R     unspecified (default), keyCompromise, CACompromise,\n"
	    "                 affiliationChanged, superseded, cessationOfOperation\n" },
	{ "crl", B(O_HOURS), ca_cmd_crl,
	    "usage: certgate ca crl -c CONFIG [--hours N]\n\n"
	    "Signs a fresh CRL in the token (nextUpdate now + N hours, default ca.crl_hours)\n"
	    "and writes it atomically to ca.crl.\n" },
	{ "list", B(O_JSON) | B(O_AGENTS), ca_cmd_list,
	    "usage: certgate ca list -c CONFIG [--json] [--agents]\n\n"
	    "Lists the certificates in the CA database: serial, agent (\"-\" for certificates\n"
	    "that are not an agent's, e.g. the server's), subject (RFC 4514, as the identity\n"
	    "map's \"subject\" wants it), not-after, time left and status (valid, revoked or\n"
	    "expired).\n\n"
	    "  --json         one JSON object per line\n"
	    "  --agents       agent certificates only\n" },
	{ "token", B(O_AGENT) | B(O_ROLE) | B(O_SCOPE) | B(O_HOURS) | B(O_LIFETIME) | B(O_TTL),
	    caagent_token,
	    "usage: certgate ca token -c CONFIG --agent ID [--role ROLE]... [--scope SCOPE]...\n"
	    "                         [--lifetime D] [--ttl D]\n\n"
	    "Creates a one-time enrollment token for agent ID bound to the roles, scopes and\n"
	    "certificate lifetime given, and prints it on stdout. Only its hash is stored\n"
	    "(ca.tokens_dir). The agent enrolls with it over EST (simpleenroll).\n\n"
	    "  --role, --scope  as for issue (without them an existing agent keeps its own)\n"
	    LIFETIME_HELP
	    "  --ttl D        how long the token can be used, 1m..30d (default 15m)\n" },
	{ "import", B(O_CERT) | B(O_CHAIN) | B(O_CRLFILE) | B(O_FORCE), caimport_main,
	    "usage: certgate ca import -c CONFIG --cert CA-CERT.pem --chain CHAIN.pem\n"
	    "                          [--crl CRLS.pem] [--force]\n\n"
	    "Installs the CA certificate a corporate CA made from ca.csr (certgate ca init\n"
	    "--intermediate): it must be a CA certificate with keyUsage keyCertSign and\n"
	    "cRLSign for the key in the CA token, and verify up to a self-signed root in\n"
	    "CHAIN.pem. Writes ca.cert (the certificate, then the chain up to the root), the\n"
	    "database, the CRL number and the first CRL.\n\n"
	    "  --cert FILE    the signed CA certificate (PEM)\n"
	    "  --chain FILE   the corporate CA certificates up to and with the root (PEM)\n"
	    "  --crl FILE     the corporate CAs' CRLs (PEM bundle), appended to ca.crl from\n"
	    "                 now on (kept as upstream-crl.pem next to it)\n"
	    "  --force        replace an existing CA certificate file\n" },
	{ "rollover", B(O_SUBJECT), caroll_rollover,
	    "usage: certgate ca rollover -c CONFIG [--subject DN]\n\n"
	    "Generates a new CA key in the CA token (ca.key's object label with -gN) and a\n"
	    "self-signed CA certificate, which signs from now on; the old CA stays trusted\n"
	    "(ca.cert holds both, ca.crl a CRL for each) until certgate ca retire.\n\n"
	    "  --subject DN   the new CA's subject (default: the old one's, CN ending G<N>)\n" },
	{ "retire", B(O_SERIAL), caroll_retire,
	    "usage: certgate ca retire -c CONFIG --serial HEX\n\n"
	    "Stops trusting the CA with that serial (not the active one): re-issues the\n"
	    "server certificate under the active CA if the retired CA signed it, then\n"
	    "removes the CA and its CRL from ca.cert and ca.crl. Agents still holding\n"
	    "certificates from it are refused from then on.\n" },
	{ "serve", B(O_WATCH_FD), ca_cmd_serve,
	    "usage: certgate ca serve -c CONFIG [--watch-fd N]\n\n"
	    "Runs the CA service in the foreground: logs into the CA token and answers\n"
	    "enrollment, renewal and OCSP requests from the gateway on the Unix socket\n"
	    "ca.socket (mode 0600). SIGTERM/SIGINT stop it.\n\n"
	    "  --watch-fd N   exit when descriptor N reaches end of file (the gateway that\n"
	    "                 started this process holds the other end)\n" },
};

static void
ca_usage(FILE *f)
{
	fprintf(f,
	    "usage: certgate ca SUBCOMMAND -c CONFIG [options]\n\n"
	    "CA operations; every signature is made with the CA key inside its token.\n\n"
	    "subcommands:\n"
	    "  init     create the CA key (in the token), CA certificate and empty CRL\n"
	    "  server   create the server key (in the token) and certificate\n"
	    "  issue    issue an agent certificate\n"
	    "  renew    renew an agent certificate (same identity, roles, scopes)\n"
	    "  revoke   revoke a certificate and re-sign the CRL\n"
	    "  crl      re-sign the CRL\n"
	    "  list     list issued certificates\n"
	    "  token    create a one-time enrollment token\n"
	    "  import   install a CA certificate signed by a corporate CA\n"
	    "  rollover make a new CA that signs while the old one stays trusted\n"
	    "  retire   stop trusting an old CA\n"
	    "  serve    run the CA service (enrollment, renewal, OCSP) on a Unix socket\n\n"
	    "  certgate ca SUBCOMMAND --help   help for one subcommand\n");
}

static int
ca_parse_int(const char *opt, const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < min || v > max) {
		cacli_error("%s must be an integer from %ld to %ld, got '%s'", opt, min, max, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int
ca_parse_duration(const char *opt, const char *s, long min, long max, long *out)
{
	char why[256];

	if (catime_duration(s, min, max, out, why, sizeof(why)) == -1) {
		cacli_error("%s '%s': %s", opt, s, why);
		return -1;
	}
	return 0;
}

/* Parses the subcommand's options into a. Returns 0, 1 for --help (printed), or 2. */
static int
ca_parse_args(const struct ca_cmd *cmd, int argc, char **argv, struct cacli_args *a)
{
	struct option opts[O_COUNT + 1];
	size_t n = 0, i;
	unsigned allowed = cmd->opts | B(O_CONFIG) | B(O_HELP);
	int ch, crl = strcmp(cmd->name, "crl") == 0;
	long v;

	memset(a, 0, sizeof(*a));
	a->watch_fd = -1;
	memset(opts, 0, sizeof(opts));
	for (i = 0; i < O_COUNT; i++)
		if (allowed & B(i))
			opts[n++] = ca_all_opts[i];
	a->dns = calloc((size_t)argc + 1, sizeof(char *));
	a->ip = calloc((size_t)argc + 1, sizeof(char *));
	a->roles = calloc((size_t)argc + 1, sizeof(char *));
	a->scopes = calloc((size_t)argc + 1, sizeof(char *));
	if (!a->dns || !a->ip || !a->roles || !a->scopes) {
		cacli_error("out of memory");
		return 2;
	}
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': a->config = optarg; break;
		case 'h':
			fputs(cmd->usage, stdout);
			return 1;
		case 256 + O_SUBJECT: a->subject = optarg; break;
		case 256 + O_FORCE: a->force = 1; break;
		case 256 + O_DNS: a->dns[a->ndns++] = optarg; break;
		case 256 + O_IP: a->ip[a->nip++] = optarg; break;
		case 256 + O_AGENT: a->agent = optarg; break;
		case 256 + O_ROLE: a->roles[a->nroles++] = optarg; break;
		case 256 + O_SCOPE: a->scopes[a->nscopes++] = optarg; break;
		case 256 + O_HOURS:
			if (ca_parse_int("--hours", optarg, 1, crl ? CA_MAX_CRL_HOURS : 8760, &v) == -1)
				goto usage;
			if (!crl && a->lifetime != 0) {
				cacli_error("give only one of --lifetime and --hours");
				goto usage;
			}
			a->hours = (int)v;
			a->lifetime = v * 3600;
			break;
		case 256 + O_LIFETIME:
			if (a->lifetime != 0) {
				cacli_error("give only one of --lifetime and --hours");
				goto usage;
			}
			if (ca_parse_duration("--lifetime", optarg, CASTORE_MIN_LIFETIME,
			    CASTORE_MAX_LIFETIME, &a->lifetime) == -1)
				goto usage;
			break;
		case 256 + O_TTL:
			if (ca_parse_duration("--ttl", optarg, 60, CAAGENT_MAX_TTL, &a->ttl) == -1)
				goto usage;
			break;
		case 256 + O_CSR: a->csr = optarg; break;
		case 256 + O_OUT: a->out = optarg; break;
		case 256 + O_SERIAL: a->serial = optarg; break;
		case 256 + O_REASON: a->reason = optarg; break;
		case 256 + O_JSON: a->json = 1; break;
		case 256 + O_AGENTS: a->agents_only = 1; break;
		case 256 + O_REVOKE_OLD: a->revoke_old = 1; break;
		case 256 + O_INTERMEDIATE: a->intermediate = 1; break;
		case 256 + O_CERT: a->cert = optarg; break;
		case 256 + O_CHAIN: a->chain = optarg; break;
		case 256 + O_CRLFILE: a->crl = optarg; break;
		case 256 + O_WATCH_FD:
			if (ca_parse_int("--watch-fd", optarg, 3, 1023, &v) == -1)
				goto usage;
			a->watch_fd = (int)v;
			break;
		case ':':
			cacli_error("option '%s' needs a value", argv[optind - 1]);
			goto usage;
		default:
			if (optopt)
				cacli_error("unknown option '-%c'", optopt);
			else
				cacli_error("unknown option '%s'", argv[optind - 1]);
			goto usage;
		}
	}
	if (optind < argc) {
		cacli_error("unexpected argument '%s'", argv[optind]);
		goto usage;
	}
	if (a->config == NULL) {
		cacli_error("-c CONFIG is required");
		goto usage;
	}
	return 0;
usage:
	fprintf(stderr, "try '%s --help'\n", cacli_prog());
	return 2;
}

static void
ca_args_free(struct cacli_args *a)
{
	free(a->dns);
	free(a->ip);
	free(a->roles);
	free(a->scopes);
}



static int
ca_cmd_crl(struct config *cfg, struct cacli_args *a)
{
	char err[1024], *num = NULL, na[CATIME_RFC3339_LEN];
	struct castore s;
	struct cadb db;
	size_t i, nrev = 0;
	int rc = 1, hours = a->hours ? a->hours : cfg->ca.crl_hours;

	if (hours <= 0)
		hours = 168;
	if (cacli_begin(cfg, &s, &db) == -1)
		return 1;
	if (castore_crl_refresh(&s, &db, (long)hours * 3600, &num, err, sizeof(err)) == -1) {
		cacli_error("%s", err);
		goto fail;
	}
	for (i = 0; i < db.n; i++)
		nrev += db.rows[i].status == 'R';
	catime_rfc3339(time(NULL) + (time_t)hours * 3600, na, sizeof(na));
	printf("CRL %s written to %s (next update %s, %zu revoked)\n", num ? num : "?",
	    cfg->ca.crl, na, nrev);
	(void)caaudit_write(cfg->ca.audit, &(struct caaudit_rec){ .what = "crl",
	    .not_after = na }, NULL);
	rc = 0;
fail:
	OPENSSL_free(num);
	cacli_end(&s, &db);
	return rc;
}

/* The RFC 4514 subject of a row: from the archived certificate, else rebuilt from
 * the oneline form (most specific RDN first). Malloc'd. */
static char *
ca_row_subject(const struct config *cfg, const struct cadb_row *r)
{
	char err[256], *path = NULL, *s = NULL, *copy, *p;
	X509 *x = NULL;
	size_t len;

	if (asprintf(&path, "%s/%s.pem", cfg->ca.certs_dir, r->serial) >= 0 &&
	    (x = certify_pem_cert(path, err, sizeof(err))) != NULL)
		s = identity_name_rfc4514(X509_get_subject_name(x));
	X509_free(x);
	free(path);
	if (s != NULL)
		return s;
	if ((copy = strdup(r->subject)) == NULL || (s = calloc(1, (len = strlen(copy) + 2))) == NULL) {
		free(copy);
		return NULL;
	}
	while ((p = strrchr(copy, '/')) != NULL) {
		if (p[1] != '\0')
			snprintf(s + strlen(s), len - strlen(s), "%s%s", *s ? "," : "", p + 1);
		*p = '\0';
	}
	free(copy);
	/* the database's oneline form has no escapes: normalize what parses (dn.h) */
	if (dn_parse(s, strlen(s), &copy, err, sizeof(err)) == 0) {
		free(s);
		s = copy;
	}
	return s;
}

static int
ca_cmd_list(struct config *cfg, struct cacli_args *a)
{
	char err[1024], cn[CERTIFY_AGENT_MAX + 2], na[CATIME_RFC3339_LEN], left[16], *line;
	const struct cadb_row *r;
	struct cadb db;
	char **subj = NULL;
	time_t now = time(NULL), t;
	size_t i;
	int ws = 6, wa = 5, wj = 7, rc = 1;
	json_t *o;

	if (cadb_load(cfg->ca.db, &db, err, sizeof(err)) == -1) {
		cacli_error("cannot load the CA database: %s", err);
		return 1;
	}
	if ((subj = calloc(db.n + 1, sizeof(*subj))) == NULL)
		goto fail;
	for (i = 0; i < db.n; i++) {
		r = &db.rows[i];
		if ((subj[i] = ca_row_subject(cfg, r)) == NULL)
			goto fail;
		if (a->agents_only && cadb_agent_of(r, cn, sizeof(cn)) == NULL)
			continue;
		if ((int)strlen(r->serial) > ws)
			ws = (int)strlen(r->serial);
		if (cadb_agent_of(r, cn, sizeof(cn)) && (int)strlen(cn) > wa)
			wa = (int)strlen(cn);
		if ((int)strlen(subj[i]) > wj)
			wj = (int)strlen(subj[i]);
	}
	if (!a->json)
		printf("%-*s  %-*s  %-*s  %-20s  %-7s  %s\n", ws, "SERIAL", wa, "AGENT", wj,
		    "SUBJECT", "NOT-AFTER", "LEFT", "STATUS");
	for (i = 0; i < db.n; i++) {
		enum cadb_status st;
		const char *ag;
		long secs = 0;

		r = &db.rows[i];
		ag = cadb_agent_of(r, cn, sizeof(cn));
		if (a->agents_only && ag == NULL)
			continue;
		st = cadb_status(r, now);
		if (cadb_expiry(r, &t) == 0) {
			catime_rfc3339(t, na, sizeof(na));
			secs = st == CADB_VALID ? (long)(t - now) : 0;
		} else
			snprintf(na, sizeof(na), "%s", r->expiry);
		catime_left(secs, left, sizeof(left));
		if (!a->json) {
			printf("%-*s  %-*s  %-*s  %-20s  %-7s  %s\n", ws, r->serial, wa,
			    ag ? ag : "-", wj, subj[i], na, left, cadb_status_name(st));
			continue;
		}
		o = json_pack("{s:s, s:s?, s:s, s:s, s:I, s:s}", "serial", r->serial,
		    "agent", ag, "subject", subj[i], "not_after", na, "left_s", (json_int_t)secs,
		    "status", cadb_status_name(st));
		if (o && r->status == 'R')
			json_object_set_new(o, "revoked", json_string(r->revocation));
		if (o == NULL || (line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
			json_decref(o);
			cacli_error("out of memory");
			goto fail;
		}
		printf("%s\n", line);
		free(line);
		json_decref(o);
	}
	rc = 0;
fail:
	for (i = 0; subj && i < db.n; i++)
		free(subj[i]);
	free(subj);
	cadb_free(&db);
	return rc;
}


static int
ca_cmd_serve(struct config *cfg, struct cacli_args *a)
{
	return caserve_main(cfg, a->watch_fd);
}

/* ------------------------------------------------------------------------ */
/* Entry point                                                              */
/* ------------------------------------------------------------------------ */

static int
ca_load_config(const char *path, struct config **cfg)
{
	struct strlist errs = { 0 };
	size_t i;

	if (config_load(path, 0, cfg, &errs) == 0) {
		strlist_free(&errs);
		return 0;
	}
	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.v[i]);
	if (errs.n == 0)
		cacli_error("%s: cannot load the configuration", path);
	strlist_free(&errs);
	return -1;
}

int
ca_main(int argc, char **argv)
{
	static char prog[64];
	const struct ca_cmd *cmd = NULL;
	struct config *cfg = NULL;
	struct cacli_args a;
	size_t i;
	int rc;

	if (argc < 2) {
		ca_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		ca_usage(stdout);
		return 0;
	}
	for (i = 0; i < sizeof(ca_cmds) / sizeof(ca_cmds[0]); i++)
		if (strcmp(argv[1], ca_cmds[i].name) == 0)
			cmd = &ca_cmds[i];
	if (cmd == NULL) {
		fprintf(stderr, "certgate ca: unknown subcommand '%s'\n", argv[1]);
		ca_usage(stderr);
		return 2;
	}
	snprintf(prog, sizeof(prog), "certgate ca %s", cmd->name);
	cacli_set_prog(prog);
	/* Keys, PIN-adjacent files and directories holding secrets are private by default;
	 * public files get their mode explicitly. */
	umask(077);
	rc = ca_parse_args(cmd, argc - 1, argv + 1, &a);
	if (rc != 0) {
		ca_args_free(&a);
		return rc == 1 ? 0 : 2;
	}
	if (ca_load_config(a.config, &cfg) == -1) {
		ca_args_free(&a);
		return 1;
	}
	rc = cmd->run(cfg, &a);
	fflush(stdout);
	p11_shutdown();
	config_free(cfg);
	ca_args_free(&a);
	return rc;
}

