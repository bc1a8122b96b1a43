/* `certgate ca init|server|issue|renew|revoke|crl|list|token|serve`: argument parsing
 * and the commands. The work is done by castore.c (the CA's files, changed under the
 * CA lock, crash-safe), certify.c (what is signed), cadb.c (the database),
 * catoken.c (enrollment tokens) and caserve.c (the CA service). Every signature is
 * made with the CA key inside its token. */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca.h"
#include "caaudit.h"
#include "cadb.h"
#include "caserve.h"
#include "castore.h"
#include "catime.h"
#include "catoken.h"
#include "certify.h"
#include "config.h"
#include "file.h"
#include "identity.h"
#include "mapedit.h"
#include "p11.h"

#define CA_DEFAULT_SUBJECT	"CN=certgate CA,O=certgate"
#define CA_SERVER_SUBJECT	"CN=certgate server,O=certgate"
#define CA_MAX_CRL_HOURS	87600
#define CA_DEFAULT_TTL		(15 * 60)
#define CA_MAX_TTL		(30L * 86400)
#define CA_TOKEN_KEEP		86400	/* used/expired token records kept this long */

static const char *ca_prog = "certgate ca";

/* User-facing error: "certgate ca SUB: message". */
static void __attribute__((format(printf, 1, 2)))
ca_error(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", ca_prog, msg);
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                */
/* ------------------------------------------------------------------------ */

enum {
	O_CONFIG, O_HELP, O_SUBJECT, O_FORCE, O_DNS, O_IP, O_AGENT, O_ROLE, O_SCOPE,
	O_HOURS, O_LIFETIME, O_TTL, O_CSR, O_OUT, O_SERIAL, O_REASON, O_JSON, O_AGENTS,
	O_REVOKE_OLD, O_WATCH_FD, O_COUNT
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
};

#define B(o) (1u << (o))

struct ca_args {
	const char *config;
	const char *subject;
	int force;
	const char **dns;
	size_t ndns;
	const char **ip;
	size_t nip;
	const char *agent;
	const char **roles;
	size_t nroles;
	const char **scopes;
	size_t nscopes;
	int hours;              /* crl --hours; 0: default */
	long lifetime;          /* seconds (--lifetime or --hours); 0: default */
	long ttl;               /* seconds; 0: default */
	const char *csr;
	const char *out;
	const char *serial;
	const char *reason;
	int json;
	int agents_only;
	int revoke_old;
	int watch_fd;           /* -1: none */
};

struct ca_cmd {
	const char *name;
	unsigned opts;
	int (*run)(struct config *, struct ca_args *);
	const char *usage;
};

static int ca_cmd_init(struct config *, struct ca_args *);
static int ca_cmd_server(struct config *, struct ca_args *);
static int ca_cmd_issue(struct config *, struct ca_args *);
static int ca_cmd_renew(struct config *, struct ca_args *);
static int ca_cmd_revoke(struct config *, struct ca_args *);
static int ca_cmd_crl(struct config *, struct ca_args *);
static int ca_cmd_list(struct config *, struct ca_args *);
static int ca_cmd_token(struct config *, struct ca_args *);
static int ca_cmd_serve(struct config *, struct ca_args *);

#define LIFETIME_HELP \
    "  --lifetime D   certificate lifetime Nm, Nh or Nd, 2m..365d\n" \
    "  --hours N      the same as --lifetime Nh\n"

static const struct ca_cmd ca_cmds[] = {
	{ "init", B(O_SUBJECT) | B(O_FORCE), ca_cmd_init,
	    "usage: certgate ca init -c CONFIG [--subject DN] [--force]\n\n"
	    "Generates the CA key inside the CA token (EC P-256, sensitive, not extractable)\n"
	    "at ca.key, writes the self-signed CA certificate (ca.cert, valid ca_days),\n"
	    "an empty database, the CRL number and the first (empty) CRL.\n\n"
	    "  --subject DN   CA subject, \"CN=...,O=...\" (default \"" CA_DEFAULT_SUBJECT "\")\n"
	    "  --force        replace an existing CA certificate file; a key that already\n"
	    "                 exists in the token is never overwritten (re-create the token)\n" },
	{ "server", B(O_DNS) | B(O_IP), ca_cmd_server,
	    "usage: certgate ca server -c CONFIG [--dns NAME]... [--ip ADDR]...\n\n"
	    "Generates the server key in the gateway's token at tls.key (or reuses it when it\n"
	    "already exists) and issues the server certificate to tls.cert: SAN DNS:localhost,\n"
	    "IP:127.0.0.1 and the names given, serverAuth, valid server_days.\n\n"
	    "  --dns NAME     extra DNS subjectAltName (repeatable)\n"
	    "  --ip ADDR      extra IP subjectAltName, IPv4 or IPv6 (repeatable)\n" },
	{ "issue", B(O_AGENT) | B(O_ROLE) | B(O_SCOPE) | B(O_HOURS) | B(O_LIFETIME) | B(O_CSR) |
	    B(O_OUT), ca_cmd_issue,
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
	    ca_cmd_renew,
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
	{ "revoke", B(O_SERIAL) | B(O_AGENT) | B(O_REASON), ca_cmd_revoke,
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
	    ca_cmd_token,
	    "usage: certgate ca token -c CONFIG --agent ID [--role ROLE]... [--scope SCOPE]...\n"
	    "                         [--lifetime D] [--ttl D]\n\n"
	    "Creates a one-time enrollment token for agent ID bound to the roles, scopes and\n"
	    "certificate lifetime given, and prints it on stdout. Only its hash is stored\n"
	    "(ca.tokens_dir). The agent enrolls with it over EST (simpleenroll).\n\n"
	    "  --role, --scope  as for issue (without them an existing agent keeps its own)\n"
	    LIFETIME_HELP
	    "  --ttl D        how long the token can be used, 1m..30d (default 15m)\n" },
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
		ca_error("%s must be an integer from %ld to %ld, got '%s'", opt, min, max, s);
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
		ca_error("%s '%s': %s", opt, s, why);
		return -1;
	}
	return 0;
}

/* Parses the subcommand's options into a. Returns 0, 1 for --help (printed), or 2. */
static int
ca_parse_args(const struct ca_cmd *cmd, int argc, char **argv, struct ca_args *a)
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
		ca_error("out of memory");
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
				ca_error("give only one of --lifetime and --hours");
				goto usage;
			}
			a->hours = (int)v;
			a->lifetime = v * 3600;
			break;
		case 256 + O_LIFETIME:
			if (a->lifetime != 0) {
				ca_error("give only one of --lifetime and --hours");
				goto usage;
			}
			if (ca_parse_duration("--lifetime", optarg, CASTORE_MIN_LIFETIME,
			    CASTORE_MAX_LIFETIME, &a->lifetime) == -1)
				goto usage;
			break;
		case 256 + O_TTL:
			if (ca_parse_duration("--ttl", optarg, 60, CA_MAX_TTL, &a->ttl) == -1)
				goto usage;
			break;
		case 256 + O_CSR: a->csr = optarg; break;
		case 256 + O_OUT: a->out = optarg; break;
		case 256 + O_SERIAL: a->serial = optarg; break;
		case 256 + O_REASON: a->reason = optarg; break;
		case 256 + O_JSON: a->json = 1; break;
		case 256 + O_AGENTS: a->agents_only = 1; break;
		case 256 + O_REVOKE_OLD: a->revoke_old = 1; break;
		case 256 + O_WATCH_FD:
			if (ca_parse_int("--watch-fd", optarg, 3, 1023, &v) == -1)
				goto usage;
			a->watch_fd = (int)v;
			break;
		case ':':
			ca_error("option '%s' needs a value", argv[optind - 1]);
			goto usage;
		default:
			if (optopt)
				ca_error("unknown option '-%c'", optopt);
			else
				ca_error("unknown option '%s'", argv[optind - 1]);
			goto usage;
		}
	}
	if (optind < argc) {
		ca_error("unexpected argument '%s'", argv[optind]);
		goto usage;
	}
	if (a->config == NULL) {
		ca_error("-c CONFIG is required");
		goto usage;
	}
	return 0;
usage:
	fprintf(stderr, "try '%s --help'\n", ca_prog);
	return 2;
}

static void
ca_args_free(struct ca_args *a)
{
	free(a->dns);
	free(a->ip);
	free(a->roles);
	free(a->scopes);
}

/* Checks --agent; 0, or 2 (usage error printed). */
static int
ca_need_agent(const struct ca_args *a)
{
	if (a->agent == NULL) {
		ca_error("--agent ID is required");
		return 2;
	}
	if (!certify_agent_id_valid(a->agent)) {
		ca_error("bad agent id '%s': want [A-Za-z0-9][A-Za-z0-9._-]{0,63}", a->agent);
		return 2;
	}
	return 0;
}

static long
ca_default_lifetime(const struct config *cfg, const struct ca_args *a)
{
	if (a->lifetime > 0)
		return a->lifetime;
	return (cfg->ca.default_hours > 0 ? cfg->ca.default_hours : 24) * 3600L;
}

/* Opens the CA with its key, takes the lock, loads the database and reconciles an
 * interrupted issuance. 0/-1 (printed). */
static int
ca_begin(struct config *cfg, struct castore *s, struct cadb *db)
{
	char err[1024];
	int n;

	memset(db, 0, sizeof(*db));
	castore_init(s, cfg);
	if (castore_lock(s, err, sizeof(err)) == -1 || castore_open(s, cfg, 1, err, sizeof(err)) == -1) {
		ca_error("%s", err);
		castore_close(s);
		return -1;
	}
	if (castore_load_db(s, db, err, sizeof(err)) == -1 ||
	    castore_reconcile(s, db, &n, err, sizeof(err)) == -1) {
		ca_error("%s", err);
		castore_close(s);
		return -1;
	}
	return 0;
}

static void
ca_end(struct castore *s, struct cadb *db)
{
	castore_close(s);
	cadb_free(db);
}

/* Index of the newest valid row of agent id (latest expiry), or -1. */
static long
ca_newest_valid(const struct cadb *db, const char *id, time_t now)
{
	char cn[CERTIFY_AGENT_MAX + 2];
	time_t best = 0, t;
	long idx = -1;
	size_t i;

	for (i = 0; i < db->n; i++) {
		const char *ag = cadb_agent_of(&db->rows[i], cn, sizeof(cn));

		if (ag == NULL || strcmp(ag, id) != 0 || cadb_status(&db->rows[i], now) != CADB_VALID)
			continue;
		if (cadb_expiry(&db->rows[i], &t) == 0 && (idx == -1 || t > best)) {
			best = t;
			idx = (long)i;
		}
	}
	return idx;
}

/* ------------------------------------------------------------------------ */
/* init, server                                                             */
/* ------------------------------------------------------------------------ */

static int
ca_cmd_init(struct config *cfg, struct ca_args *a)
{
	struct certify_spec spec;
	struct castore s;
	struct p11_defaults d;
	struct cadb db = { 0 };
	X509_NAME *name = NULL;
	ASN1_INTEGER *sn = NULL;
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	char err[1024], *serial = NULL, *subj = NULL, *dir = NULL, na[CATIME_RFC3339_LEN];
	struct stat st;
	int rc = 1, ex;

	castore_init(&s, cfg);
	if (cfg->ca.key == NULL || !p11_is_uri(cfg->ca.key)) {
		ca_error("ca.key must be a pkcs11: URI (the key is made in the token)");
		return 1;
	}
	if ((name = certify_dn(a->subject ? a->subject : CA_DEFAULT_SUBJECT, err,
	    sizeof(err))) == NULL) {
		ca_error("%s", err);
		return 1;
	}
	if (castore_lock(&s, err, sizeof(err)) == -1) {
		ca_error("%s", err);
		goto fail;
	}
	if (access(cfg->ca.cert, F_OK) == 0 && !a->force) {
		ca_error("CA certificate %s already exists (use --force to replace it)",
		    cfg->ca.cert);
		goto fail;
	}
	config_ca_p11(cfg, &d);
	if ((ex = p11_key_exists(&d, cfg->ca.key)) == -1) {
		ca_error("cannot look for the CA key in the token (see above)");
		goto fail;
	}
	if (ex == 1) {
		ca_error("the CA key already exists in the token; keys in the token are never "
		    "overwritten: re-create the token (scripts/pki-init --force)");
		goto fail;
	}
	if ((dir = file_dirname(cfg->ca.cert)) == NULL)
		goto fail;
	/* 0700: the CA service's socket (ca/ca.sock) and token records live here too. */
	if ((stat(dir, &st) == -1 && (mkdir(dir, 0700) == -1 || chmod(dir, 0700) == -1)) ||
	    (stat(cfg->ca.certs_dir, &st) == -1 && (mkdir(cfg->ca.certs_dir, 0755) == -1 ||
	    chmod(cfg->ca.certs_dir, 0755) == -1))) {
		ca_error("cannot create the CA directories %s, %s: %s", dir, cfg->ca.certs_dir,
		    strerror(errno));
		goto fail;
	}
	if (p11_generate_ec_key(&d, cfg->ca.key, &key) == -1) {
		ca_error("cannot generate the CA key in the token (see above)");
		goto fail;
	}
	if ((sn = certify_serial(NULL, NULL, &serial, err, sizeof(err))) == NULL)
		goto sfail;
	memset(&spec, 0, sizeof(spec));
	spec.profile = CERTIFY_CA;
	spec.subject = name;
	spec.pubkey = key;
	spec.signer = key;
	spec.seconds = (long)cfg->ca.ca_days * 86400L;
	spec.serial = sn;
	if ((x = certify_cert(&spec, err, sizeof(err))) == NULL ||
	    certify_pem_write(cfg->ca.cert, x, NULL, NULL, 0644, err, sizeof(err)) == -1)
		goto sfail;
	if (cadb_save(cfg->ca.db, &db) == -1) {
		ca_error("cannot write %s: %s", cfg->ca.db, strerror(errno));
		goto fail;
	}
	s.cert = x;
	s.key = key;
	if (castore_crlnumber_init(&s, err, sizeof(err)) == -1 ||
	    castore_crl_refresh(&s, &db, (long)cfg->ca.crl_hours * 3600, NULL, err,
	    sizeof(err)) == -1) {
		s.cert = NULL;
		s.key = NULL;
		goto sfail;
	}
	s.cert = NULL;
	s.key = NULL;
	subj = X509_NAME_oneline(name, NULL, 0);
	catime_rfc3339(time(NULL) + (time_t)cfg->ca.ca_days * 86400, na, sizeof(na));
	(void)caaudit_write(cfg->ca.audit, &(struct caaudit_rec){ .what = "init",
	    .serial = serial, .subject = subj, .not_after = na }, NULL);
	printf("CA certificate %s written to %s (key in the token, serial %s)\n",
	    subj ? subj : "?", cfg->ca.cert, serial);
	rc = 0;
	goto fail;
sfail:
	ca_error("%s", err);
fail:
	castore_unlock(&s);
	OPENSSL_free(subj);
	OPENSSL_free(serial);
	ASN1_INTEGER_free(sn);
	free(dir);
	X509_free(x);
	X509_NAME_free(name);
	EVP_PKEY_free(key);
	return rc;
}

static int
ca_dns_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-')
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-' &&
		    !(s[i] == '*' && i == 0))
			return 0;
	return 1;
}

/* "DNS:localhost,IP:127.0.0.1,..." from the arguments (validated). */
static char *
ca_server_san(const struct ca_args *a)
{
	unsigned char ipbuf[16];
	size_t i, len = 64;
	char *s;

	for (i = 0; i < a->ndns; i++) {
		if (!ca_dns_valid(a->dns[i])) {
			ca_error("--dns '%s' is not a valid host name", a->dns[i]);
			return NULL;
		}
		len += strlen(a->dns[i]) + 6;
	}
	for (i = 0; i < a->nip; i++) {
		if (inet_pton(AF_INET, a->ip[i], ipbuf) != 1 &&
		    inet_pton(AF_INET6, a->ip[i], ipbuf) != 1) {
			ca_error("--ip '%s' is not an IPv4 or IPv6 address", a->ip[i]);
			return NULL;
		}
		len += strlen(a->ip[i]) + 5;
	}
	if ((s = malloc(len)) == NULL)
		return NULL;
	snprintf(s, len, "DNS:localhost,IP:127.0.0.1");
	for (i = 0; i < a->ndns; i++)
		if (strcmp(a->dns[i], "localhost") != 0)
			snprintf(s + strlen(s), len - strlen(s), ",DNS:%s", a->dns[i]);
	for (i = 0; i < a->nip; i++)
		if (strcmp(a->ip[i], "127.0.0.1") != 0)
			snprintf(s + strlen(s), len - strlen(s), ",IP:%s", a->ip[i]);
	return s;
}

/* Loads the server key when it exists (renewal), else generates it in the token. */
static int
ca_server_key(const struct config *cfg, EVP_PKEY **key)
{
	struct p11_defaults d;
	int ex;

	config_tls_p11(cfg, &d);
	if ((ex = p11_key_exists(&d, cfg->tls.key)) == -1) {
		ca_error("cannot look for the server key in the token (see above)");
		return -1;
	}
	if (ex == 1) {
		fprintf(stderr, "%s: the server key already exists in the token; reusing it\n",
		    ca_prog);
		if (p11_load_private_key(&d, cfg->tls.key, 0, key) == -1) {
			ca_error("cannot load the server key from the token (see above)");
			return -1;
		}
		return 0;
	}
	if (p11_generate_ec_key(&d, cfg->tls.key, key) == -1) {
		ca_error("cannot generate the server key in the token (see above)");
		return -1;
	}
	return 0;
}

static int
ca_cmd_server(struct config *cfg, struct ca_args *a)
{
	struct certify_spec spec;
	struct castore s;
	struct cadb db;
	X509_NAME *name = NULL;
	ASN1_INTEGER *sn = NULL;
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	char err[1024], *san = NULL, *serial = NULL, *subj = NULL, *dir = NULL;
	char exp[CATIME_INDEX_LEN], na[CATIME_RFC3339_LEN];
	struct stat st;
	time_t t;
	int rc = 1;

	if (cfg->tls.key == NULL || !p11_is_uri(cfg->tls.key)) {
		ca_error("tls.key must be a pkcs11: URI (the key is made in the token)");
		return 1;
	}
	if ((san = ca_server_san(a)) == NULL)
		return 2;
	if ((name = certify_dn(CA_SERVER_SUBJECT, err, sizeof(err))) == NULL) {
		ca_error("%s", err);
		free(san);
		return 1;
	}
	if (ca_begin(cfg, &s, &db) == -1)
		goto out;
	if (ca_server_key(cfg, &key) == -1)
		goto fail;
	if ((sn = castore_serial(&s, &db, &serial, err, sizeof(err))) == NULL)
		goto sfail;
	memset(&spec, 0, sizeof(spec));
	spec.profile = CERTIFY_SERVER;
	spec.subject = name;
	spec.pubkey = key;
	spec.issuer = s.cert;
	spec.signer = s.key;
	spec.seconds = (long)cfg->ca.server_days * 86400L;
	spec.serial = sn;
	spec.san = san;
	spec.ocsp_url = cfg->ca.ocsp_url;
	if ((x = certify_cert(&spec, err, sizeof(err))) == NULL)
		goto sfail;
	if ((dir = file_dirname(cfg->tls.cert)) == NULL)
		goto fail;
	if (stat(dir, &st) == -1 && (mkdir(dir, 0755) == -1 || chmod(dir, 0755) == -1)) {
		ca_error("cannot create %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (catime_from_asn1(X509_get0_notAfter(x), &t) == -1)
		goto fail;
	catime_format(t, exp, sizeof(exp));
	catime_rfc3339(t, na, sizeof(na));
	subj = X509_NAME_oneline(name, NULL, 0);
	if (castore_archive(&s, x, serial, err, sizeof(err)) == -1 ||
	    certify_pem_write(cfg->tls.cert, x, NULL, NULL, 0644, err, sizeof(err)) == -1)
		goto sfail;
	if (subj == NULL || cadb_add_valid(&db, exp, serial, subj) == -1 ||
	    cadb_save(cfg->ca.db, &db) == -1) {
		ca_error("cannot record the server certificate in %s: %s", cfg->ca.db,
		    strerror(errno));
		goto fail;
	}
	(void)caaudit_write(cfg->ca.audit, &(struct caaudit_rec){ .what = "server",
	    .serial = serial, .subject = subj, .not_after = na }, NULL);
	printf("%s\n", serial);
	rc = 0;
	goto fail;
sfail:
	ca_error("%s", err);
fail:
	ca_end(&s, &db);
out:
	OPENSSL_free(serial);
	OPENSSL_free(subj);
	ASN1_INTEGER_free(sn);
	free(san);
	free(dir);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* issue, renew                                                             */
/* ------------------------------------------------------------------------ */

/* Reads a PEM or DER CSR, verifies its self-signature and key, returns its key. */
static EVP_PKEY *
ca_csr_key(const char *path)
{
	char err[512];
	X509_REQ *req = NULL;
	EVP_PKEY *k = NULL;
	BIO *b;

	if ((b = BIO_new_file(path, "rb")) == NULL) {
		ca_error("cannot open CSR %s: %s", path, strerror(errno));
		ERR_clear_error();
		return NULL;
	}
	req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
	if (req == NULL) {
		(void)BIO_reset(b);
		ERR_clear_error();
		req = d2i_X509_REQ_bio(b, NULL);
	}
	BIO_free(b);
	ERR_clear_error();
	if (req == NULL) {
		ca_error("%s is not a certificate signing request (PEM or DER)", path);
		return NULL;
	}
	if ((k = X509_REQ_get_pubkey(req)) == NULL) {
		ca_error("cannot read the public key of %s", path);
		goto fail;
	}
	if (X509_REQ_verify(req, k) != 1) {
		ERR_clear_error();
		ca_error("the signature of %s does not verify", path);
		goto fail;
	}
	if (certify_key_acceptable(k, err, sizeof(err)) == -1) {
		ca_error("%s: %s", path, err);
		goto fail;
	}
	X509_REQ_free(req);
	return k;
fail:
	EVP_PKEY_free(k);
	X509_REQ_free(req);
	return NULL;
}

static char *
ca_out_dir(const struct config *cfg, const struct ca_args *a)
{
	char *p;

	if (a->out)
		return strdup(a->out);
	if (asprintf(&p, "%s/%s", cfg->ca.agents_dir, a->agent) < 0)
		return NULL;
	return p;
}

static int
ca_cmd_issue(struct config *cfg, struct ca_args *a)
{
	struct mapedit_agent m = { 0 };
	struct castore_issue in;
	struct castore_issued out = { 0 };
	struct castore s;
	struct cadb db;
	EVP_PKEY *pub = NULL, *gen = NULL;
	char err[1024], *dir = NULL;
	long dup;
	int rc;

	if ((rc = ca_need_agent(a)) != 0)
		return rc;
	rc = 1;
	if (a->csr) {
		if ((pub = ca_csr_key(a->csr)) == NULL)
			return 1;
	} else if ((gen = pub = EVP_EC_gen("P-256")) == NULL) {
		ca_error("cannot generate the agent key");
		return 1;
	}
	if ((dir = ca_out_dir(cfg, a)) == NULL || ca_begin(cfg, &s, &db) == -1)
		goto out;
	if ((dup = ca_newest_valid(&db, a->agent, time(NULL))) != -1) {
		ca_error("agent %s already has a valid certificate %s: renew it (agent-renew, "
		    "certgate ca renew) or revoke it first", a->agent, db.rows[dup].serial);
		goto fail;
	}
	m.roles = a->roles;
	m.nroles = a->nroles;
	m.set_roles = a->nroles > 0;
	m.scopes = a->scopes;
	m.nscopes = a->nscopes;
	m.set_scopes = a->nscopes > 0;
	memset(&in, 0, sizeof(in));
	in.agent = a->agent;
	in.pubkey = pub;
	in.seconds = ca_default_lifetime(cfg, a);
	in.map = &m;
	in.out_dir = dir;
	in.out_key = gen;
	in.audit = (struct caaudit_rec){ .what = "issue", .agent = a->agent };
	if (castore_issue(&s, &db, &in, &out, err, sizeof(err)) == -1) {
		ca_error("%s", err);
		goto fail;
	}
	printf("%s\n", out.serial);
	rc = 0;
fail:
	ca_end(&s, &db);
out:
	X509_free(out.cert);
	EVP_PKEY_free(pub);
	free(dir);
	return rc;
}

/* 1 when the identity map has an agent with this id. */
static int
ca_mapped(const struct config *cfg, const char *id, char *err, size_t errlen)
{
	struct identity_map *m = NULL;
	size_t i;
	int found = 0;

	if (identity_map_load(cfg->identity_map, &m, err, errlen) == -1)
		return -1;
	for (i = 0; i < m->nagents; i++)
		if (strcmp(m->agents[i].id, id) == 0)
			found = 1;
	identity_map_free(m);
	return found;
}

/* Revokes every valid row of agent id except keep; fills picked. */
static size_t
ca_revoke_others(struct cadb *db, const char *id, const char *keep, size_t *picked)
{
	char cn[CERTIFY_AGENT_MAX + 2];
	time_t now = time(NULL);
	size_t i, n = 0;

	for (i = 0; i < db->n; i++) {
		const char *ag = cadb_agent_of(&db->rows[i], cn, sizeof(cn));

		if (ag == NULL || strcmp(ag, id) != 0 || cadb_serial_eq(db->rows[i].serial, keep) ||
		    cadb_status(&db->rows[i], now) != CADB_VALID)
			continue;
		if (cadb_revoke(&db->rows[i], now, "superseded") == 0)
			picked[n++] = i;
	}
	return n;
}

static int ca_revoke_commit(struct castore *s, struct cadb *db, const size_t *picked,
    size_t npicked, const char *reason, FILE *out);

static int
ca_cmd_renew(struct config *cfg, struct ca_args *a)
{
	struct castore_issue in;
	struct castore_issued out = { 0 };
	struct castore s;
	struct cadb db;
	EVP_PKEY *pub = NULL;
	X509 *old = NULL;
	char err[1024], *dir = NULL, *path = NULL;
	size_t *picked = NULL, npicked;
	time_t nb, na;
	long idx, life;
	int rc;

	if ((rc = ca_need_agent(a)) != 0)
		return rc;
	rc = 1;
	if (a->csr && (pub = ca_csr_key(a->csr)) == NULL)
		return 1;
	if ((dir = ca_out_dir(cfg, a)) == NULL || ca_begin(cfg, &s, &db) == -1)
		goto out;
	if ((idx = ca_newest_valid(&db, a->agent, time(NULL))) == -1) {
		ca_error("agent %s has no valid certificate to renew (issue one with agent-issue "
		    "or an enrollment token)", a->agent);
		goto fail;
	}
	switch (ca_mapped(cfg, a->agent, err, sizeof(err))) {
	case -1:
		ca_error("%s", err);
		goto fail;
	case 0:
		ca_error("agent %s is not in the identity map %s: it cannot be renewed", a->agent,
		    cfg->identity_map);
		goto fail;
	}
	if (asprintf(&path, "%s/%s.pem", cfg->ca.certs_dir, db.rows[idx].serial) < 0) {
		path = NULL;
		goto fail;
	}
	if ((old = certify_pem_cert(path, err, sizeof(err))) == NULL) {
		ca_error("the current certificate: %s", err);
		goto fail;
	}
	if (pub == NULL && (pub = X509_get_pubkey(old)) == NULL) {
		ca_error("cannot read the key of %s", path);
		goto fail;
	}
	life = a->lifetime;
	if (life == 0 && catime_from_asn1(X509_get0_notBefore(old), &nb) == 0 &&
	    catime_from_asn1(X509_get0_notAfter(old), &na) == 0)
		life = (long)(na - nb) - CERTIFY_BACKDATE;
	if (life < CASTORE_MIN_LIFETIME)
		life = CASTORE_MIN_LIFETIME;
	if (life > CASTORE_MAX_LIFETIME)
		life = CASTORE_MAX_LIFETIME;
	memset(&in, 0, sizeof(in));
	in.agent = a->agent;
	in.pubkey = pub;
	in.seconds = life;
	in.out_dir = dir;
	in.keep_key = a->csr == NULL;
	in.audit = (struct caaudit_rec){ .what = "renew", .agent = a->agent,
	    .old_serial = db.rows[idx].serial };
	if (castore_issue(&s, &db, &in, &out, err, sizeof(err)) == -1) {
		ca_error("%s", err);
		goto fail;
	}
	printf("%s\n", out.serial);
	if (a->revoke_old) {
		if ((picked = calloc(db.n + 1, sizeof(*picked))) == NULL)
			goto fail;
		npicked = ca_revoke_others(&db, a->agent, out.serial, picked);
		if (npicked > 0 && ca_revoke_commit(&s, &db, picked, npicked, "superseded",
		    stderr) == -1)
			goto fail;
	}
	rc = 0;
fail:
	ca_end(&s, &db);
out:
	X509_free(out.cert);
	X509_free(old);
	EVP_PKEY_free(pub);
	free(picked);
	free(path);
	free(dir);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* revoke, crl, list                                                        */
/* ------------------------------------------------------------------------ */

/* Normalises a user-given serial (optional 0x, colons) to uppercase hex. */
static int
ca_serial_arg(const char *in, char *out, size_t len)
{
	size_t n = 0;

	if (strncasecmp(in, "0x", 2) == 0)
		in += 2;
	for (; *in; in++) {
		if (*in == ':')
			continue;
		if (!isxdigit((unsigned char)*in) || n + 1 >= len)
			return -1;
		out[n++] = (char)toupper((unsigned char)*in);
	}
	out[n] = '\0';
	return n ? 0 : -1;
}

/* The CRL is signed before anything is written, so a token failure changes nothing;
 * then the database, the CRL, one audit line per serial. The serials are printed on
 * out (stdout for revoke, stderr as a note for renew). */
static int
ca_revoke_commit(struct castore *s, struct cadb *db, const size_t *picked, size_t npicked,
    const char *reason, FILE *out)
{
	const struct config *cfg = s->cfg;
	char err[1024], cn[128], na[CATIME_RFC3339_LEN];
	X509_CRL *crl = NULL;
	time_t t;
	size_t i;
	int rc = -1;

	if (castore_crl_sign(s, db, (long)cfg->ca.crl_hours * 3600, &crl, NULL, err,
	    sizeof(err)) == -1)
		goto sfail;
	if (cadb_save(cfg->ca.db, db) == -1) {
		ca_error("cannot write the CA database %s: %s", cfg->ca.db, strerror(errno));
		goto fail;
	}
	if (castore_crl_publish(s, crl, err, sizeof(err)) == -1)
		goto sfail;
	for (i = 0; i < npicked; i++) {
		const struct cadb_row *r = &db->rows[picked[i]];

		if (cadb_expiry(r, &t) == 0)
			catime_rfc3339(t, na, sizeof(na));
		else
			snprintf(na, sizeof(na), "?");
		(void)caaudit_write(cfg->ca.audit, &(struct caaudit_rec){ .what = "revoke",
		    .serial = r->serial, .agent = cadb_agent_of(r, cn, sizeof(cn)),
		    .subject = r->subject, .reason = reason, .not_after = na }, NULL);
		if (out == stdout)
			printf("%s\n", r->serial);
		else
			fprintf(out, "%s: revoked %s (%s)\n", ca_prog, r->serial, reason);
	}
	rc = 0;
	goto fail;
sfail:
	ca_error("%s", err);
fail:
	X509_CRL_free(crl);
	return rc;
}

static const char *
ca_reason_arg(const char *r)
{
	static const char *const allowed[] = { "unspecified", "keyCompromise", "CACompromise",
	    "affiliationChanged", "superseded", "cessationOfOperation", NULL };
	size_t i;

	for (i = 0; allowed[i]; i++)
		if (strcasecmp(allowed[i], r ? r : "unspecified") == 0)
			return allowed[i];
	return NULL;
}

static int
ca_cmd_revoke(struct config *cfg, struct ca_args *a)
{
	char serial[80], cn[CERTIFY_AGENT_MAX + 2];
	struct castore s;
	struct cadb db;
	struct cadb_row *r;
	const char *reason;
	size_t *picked = NULL, npicked = 0, nrevoked = 0, i;
	time_t now = time(NULL);
	int rc = 1;

	if ((a->serial == NULL) == (a->agent == NULL)) {
		ca_error("give exactly one of --serial HEX or --agent ID");
		return 2;
	}
	if ((reason = ca_reason_arg(a->reason)) == NULL) {
		ca_error("unknown reason '%s' (unspecified, keyCompromise, CACompromise, "
		    "affiliationChanged, superseded, cessationOfOperation)", a->reason);
		return 2;
	}
	if (a->serial && ca_serial_arg(a->serial, serial, sizeof(serial)) == -1) {
		ca_error("--serial '%s' is not a hexadecimal serial number", a->serial);
		return 1;
	}
	if (ca_begin(cfg, &s, &db) == -1)
		return 1;
	if ((picked = calloc(db.n + 1, sizeof(*picked))) == NULL)
		goto fail;
	if (a->serial) {
		if ((r = cadb_find_serial(&db, serial)) == NULL) {
			ca_error("no certificate with serial %s in the CA database", serial);
			goto fail;
		}
		if (r->status == 'R') {
			fprintf(stderr, "%s: certificate %s is already revoked (%s); nothing to do\n",
			    ca_prog, r->serial, r->revocation);
			rc = 0;
			goto fail;
		}
		picked[npicked++] = (size_t)(r - db.rows);
	} else {
		for (i = 0; i < db.n; i++) {
			const char *ag = cadb_agent_of(&db.rows[i], cn, sizeof(cn));

			if (ag == NULL || strcmp(ag, a->agent) != 0)
				continue;
			if (db.rows[i].status == 'R')
				nrevoked++;
			else if (cadb_status(&db.rows[i], now) == CADB_VALID)
				picked[npicked++] = i;
		}
		if (npicked == 0 && nrevoked > 0) {
			fprintf(stderr, "%s: agent %s has no valid certificate (already revoked); "
			    "nothing to do\n", ca_prog, a->agent);
			rc = 0;
			goto fail;
		}
		if (npicked == 0) {
			ca_error("agent %s has no valid certificate in the CA database", a->agent);
			goto fail;
		}
	}
	for (i = 0; i < npicked; i++)
		if (cadb_revoke(&db.rows[picked[i]], now, reason) == -1)
			goto fail;
	if (ca_revoke_commit(&s, &db, picked, npicked, reason, stdout) == -1)
		goto fail;
	rc = 0;
fail:
	ca_end(&s, &db);
	free(picked);
	return rc;
}

static int
ca_cmd_crl(struct config *cfg, struct ca_args *a)
{
	char err[1024], *num = NULL, na[CATIME_RFC3339_LEN];
	struct castore s;
	struct cadb db;
	size_t i, nrev = 0;
	int rc = 1, hours = a->hours ? a->hours : cfg->ca.crl_hours;

	if (hours <= 0)
		hours = 168;
	if (ca_begin(cfg, &s, &db) == -1)
		return 1;
	if (castore_crl_refresh(&s, &db, (long)hours * 3600, &num, err, sizeof(err)) == -1) {
		ca_error("%s", err);
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
	ca_end(&s, &db);
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
	return s;
}

static int
ca_cmd_list(struct config *cfg, struct ca_args *a)
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
		ca_error("cannot load the CA database: %s", err);
		return 1;
	}
	if ((subj = calloc(db.n + 1, sizeof(*subj))) == NULL)
		goto fail;
	for (i = 0; i < db.n; i++) {
		r = &db.rows[i];
		if ((subj[i] = ca_row_subject(cfg, r)) == NULL)
			goto fail;
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
			ca_error("out of memory");
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

/* ------------------------------------------------------------------------ */
/* token, serve                                                             */
/* ------------------------------------------------------------------------ */

static int
ca_cmd_token(struct config *cfg, struct ca_args *a)
{
	struct mapedit_agent m = { 0 };
	struct catoken_rec rec;
	struct castore s;
	unsigned char hash[32];
	char err[1024], tok[CATOKEN_LEN + 1], id[17], exp[CATIME_RFC3339_LEN], life[16];
	char *maptext = NULL, *newmap = NULL, *uri = NULL;
	size_t maplen = 0, newlen;
	time_t now = time(NULL);
	json_t *extra = NULL;
	int rc;

	if ((rc = ca_need_agent(a)) != 0)
		return rc;
	rc = 1;
	memset(&rec, 0, sizeof(rec));
	castore_init(&s, cfg);
	if (castore_lock(&s, err, sizeof(err)) == -1 || castore_open(&s, cfg, 0, err,
	    sizeof(err)) == -1)
		goto sfail;
	/* The same checks the enrollment will make, so a token is never born useless. */
	m.id = a->agent;
	if (asprintf(&uri, "spiffe://%s/agent/%s", cfg->ca.trust_domain, a->agent) < 0) {
		uri = NULL;
		goto fail;
	}
	m.uri = uri;
	m.roles = a->roles;
	m.nroles = a->nroles;
	m.set_roles = a->nroles > 0;
	m.scopes = a->scopes;
	m.nscopes = a->nscopes;
	m.set_scopes = a->nscopes > 0;
	if (mapedit_read(cfg->identity_map, &maptext, &maplen, err, sizeof(err)) == -1)
		goto sfail;
	if (mapedit_set_agent(maptext, maplen, &m, &newmap, &newlen, err, sizeof(err)) == -1) {
		ca_error("%s: %s", cfg->identity_map, err);
		goto fail;
	}
	snprintf(rec.agent, sizeof(rec.agent), "%s", a->agent);
	rec.roles = (char **)a->roles;
	rec.nroles = a->nroles;
	rec.set_roles = a->nroles > 0;
	rec.scopes = (char **)a->scopes;
	rec.nscopes = a->nscopes;
	rec.set_scopes = a->nscopes > 0;
	rec.lifetime_s = ca_default_lifetime(cfg, a);
	rec.created = now;
	rec.expires = now + (a->ttl ? a->ttl : CA_DEFAULT_TTL);
	(void)catoken_prune(cfg->ca.tokens_dir, now, CA_TOKEN_KEEP);
	if (catoken_make(s.fp, tok, sizeof(tok), hash) == -1) {
		ca_error("cannot make a random token");
		goto fail;
	}
	if (catoken_put(cfg->ca.tokens_dir, hash, &rec, err, sizeof(err)) == -1)
		goto sfail;
	catoken_id(hash, id);
	catime_rfc3339((time_t)rec.expires, exp, sizeof(exp));
	catime_duration_str(rec.lifetime_s, life, sizeof(life));
	if ((extra = catoken_rec_json(&rec)) != NULL) {
		json_object_del(extra, "agent");
		json_object_del(extra, "created");
		json_object_set_new(extra, "expires", json_string(exp));
	}
	(void)caaudit_write(cfg->ca.audit, &(struct caaudit_rec){ .what = "token",
	    .agent = a->agent, .token = id }, extra);
	fprintf(stderr, "%s: token %s for agent %s (certificate lifetime %s), usable once "
	    "until %s\n", ca_prog, id, a->agent, life, exp);
	printf("%s\n", tok);
	explicit_bzero(tok, sizeof(tok));
	rc = 0;
	goto fail;
sfail:
	ca_error("%s", err);
fail:
	json_decref(extra);
	free(maptext);
	free(newmap);
	free(uri);
	castore_close(&s);
	return rc;
}

static int
ca_cmd_serve(struct config *cfg, struct ca_args *a)
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
		ca_error("%s: cannot load the configuration", path);
	strlist_free(&errs);
	return -1;
}

int
ca_main(int argc, char **argv)
{
	static char prog[64];
	const struct ca_cmd *cmd = NULL;
	struct config *cfg = NULL;
	struct ca_args a;
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
	ca_prog = prog;
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
