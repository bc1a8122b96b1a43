/* certgate: command dispatch. */
#include <getopt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "agent.h"
#include "auditsum.h"
#include "ca.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "p11.h"
#include "state.h"
#include "tls.h"

static void
main_usage(FILE *f)
{
	fprintf(f,
	    "usage: certgate COMMAND [options]\n"
	    "\n"
	    "mTLS gateway for MCP servers, keys held in a PKCS#11 token.\n"
	    "\n"
	    "commands:\n"
	    "  serve -c CONFIG   run the gateway in the foreground (logs to stderr)\n"
	    "  check -c CONFIG   validate the configuration, open the token, load keys and\n"
	    "                    certificates; prints \"configuration OK\" or every problem\n"
	    "  ca SUBCOMMAND     CA operations in the token: init|server|issue|renew|revoke|\n"
	    "                    crl|list|token|serve\n"
	    "  audit summary     per-agent calls, denials and addresses from the audit log\n");
	agent_usage_summary(f);
	fprintf(f,
	    "\n"
	    "  certgate COMMAND --help   help for one command\n"
	    "  certgate --version        print the version\n");
}

static void
main_usage_cmd(FILE *f, const char *cmd)
{
	if (strcmp(cmd, "serve") == 0)
		fprintf(f, "usage: certgate serve -c CONFIG\n\n"
		    "Runs the gateway in the foreground. SIGHUP reloads the identity map, the CRL,\n"
		    "the certificates and CONFIG (they are also reloaded when their files change;\n"
		    "CONFIG keys that need a restart are named in a warning); SIGUSR1 re-opens the\n"
		    "audit log (logrotate); SIGTERM/SIGINT stop accepting and finish in-flight\n"
		    "requests. Writes its pid to certgate.pid next to CONFIG. Under systemd\n"
		    "(Type=notify) it reports READY, RELOADING and STOPPING.\n");
	else
		fprintf(f, "usage: certgate check -c CONFIG\n\n"
		    "Validates the configuration as a whole, opens the token, loads the keys and\n"
		    "certificates, prints \"configuration OK\" and exits 0, or prints every problem\n"
		    "found and exits 1.\n");
}

/* Parses "-c CONFIG" for serve/check. Returns the config path or NULL (usage printed). */
static const char *
main_parse_config_opt(int argc, char **argv, const char *cmd, int *help)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	int ch;

	*help = 0;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			*help = 1;
			main_usage_cmd(stdout, cmd);
			return NULL;
		default:
			main_usage_cmd(stderr, cmd);
			return NULL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "certgate %s: unexpected argument '%s'\n", cmd, argv[optind]);
		main_usage_cmd(stderr, cmd);
		return NULL;
	}
	if (path == NULL) {
		fprintf(stderr, "certgate %s: -c CONFIG is required\n", cmd);
		main_usage_cmd(stderr, cmd);
	}
	return path;
}

static int
main_load_config(const char *path, struct config **cfg)
{
	struct strlist errs = { 0 };
	size_t i;

	if (config_load(path, CONFIG_CHECK_FILES | CONFIG_GATEWAY, cfg, &errs) == 0) {
		strlist_free(&errs);
		return 0;
	}
	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.v[i]);
	if (errs.n == 0)
		fprintf(stderr, "%s: cannot load configuration\n", path);
	strlist_free(&errs);
	return -1;
}

/* The token named by pkcs11.token and the CA key object must exist: serve does not
 * need them at start-up (the server key's URI may name its own token), so without
 * this check the mistake shows only at the first `certgate ca` command. */
static int
main_check_token_objects(const struct config *cfg)
{
	struct p11_defaults d = {
		.module = cfg->pkcs11.module, .token = cfg->pkcs11.token,
		.pin_file = cfg->pkcs11.pin_file, .pin_env = cfg->pkcs11.pin_env,
		.softhsm2_conf = cfg->pkcs11.softhsm2_conf,
	};
	int r, rc = 0;

	if (cfg->pkcs11.module != NULL && cfg->pkcs11.token != NULL &&
	    p11_key_exists(&d, "pkcs11:type=private") == -1) {
		fprintf(stderr, "%s: pkcs11.token \"%s\": cannot open this token in %s (see "
		    "above; `softhsm2-util --show-slots` or `pkcs11-tool --module %s -L` "
		    "lists the tokens and their labels)\n", cfg->path, cfg->pkcs11.token,
		    cfg->pkcs11.module, cfg->pkcs11.module);
		rc = -1;
	}
	if (cfg->ca.key != NULL && p11_is_uri(cfg->ca.key)) {
		char *red = p11_uri_redact(cfg->ca.key);
		struct p11_defaults dc;

		config_ca_p11(cfg, &dc);        /* the CA's own token and PIN */
		if ((r = p11_key_exists(&dc, cfg->ca.key)) == 0)
			fprintf(stderr, "%s: ca.key %s: no such private key object in the "
			    "token (the CA cannot issue or revoke; create it with `certgate ca "
			    "init` or correct ca.key)\n", cfg->path, red ? red : "(URI)");
		else if (r == -1)
			fprintf(stderr, "%s: ca.key %s: cannot look the key up (see above)\n",
			    cfg->path, red ? red : "(URI)");
		free(red);
		if (r != 1)
			rc = -1;
	}
	return rc;
}

static int
main_cmd_check(struct config *cfg)
{
	EVP_PKEY *key = NULL;
	int rc = 1;

	if (tls_load_server_key(cfg, &key) == -1)
		goto fail;
	if (main_check_token_objects(cfg) == -1)
		goto fail;
	if (state_init(cfg, key) == -1)
		goto fail;
	/* serve would start, but refuse every client: that is not a working config. */
	if (cfg->tls.crl_check && state_crl_expired()) {
		fprintf(stderr, "%s: CRL %s has expired: every client would be refused "
		    "(re-sign it with `certgate ca crl`)\n", cfg->path, cfg->tls.crl);
		state_shutdown();
		goto fail;
	}
	state_shutdown();
	printf("configuration OK\n");
	rc = 0;
fail:
	EVP_PKEY_free(key);
	p11_shutdown();
	if (rc)
		fprintf(stderr, "%s: configuration has errors (see above)\n", cfg->path);
	return rc;
}

int
main(int argc, char **argv)
{
	struct rlimit nocore = { 0, 0 };
	struct config *cfg = NULL;
	const char *path;
	int help, rc;

	/* The PIN passes through memory at start-up: no core dumps, no ptrace by others. */
	setrlimit(RLIMIT_CORE, &nocore);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

	if (argc < 2) {
		main_usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		main_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("certgate %s (%s)\n", CERTGATE_VERSION, OpenSSL_version(OPENSSL_VERSION));
		return 0;
	}
	if (strcmp(argv[1], "ca") == 0)
		return ca_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "agent") == 0)
		return agent_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "audit") == 0)
		return auditsum_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "serve") != 0 && strcmp(argv[1], "check") != 0) {
		fprintf(stderr, "certgate: unknown command '%s'\n", argv[1]);
		main_usage(stderr);
		return 2;
	}
	path = main_parse_config_opt(argc - 1, argv + 1, argv[1], &help);
	if (path == NULL)
		return help ? 0 : 2;
	if (main_load_config(path, &cfg) == -1)
		return 1;
	if (strcmp(argv[1], "check") == 0)
		rc = main_cmd_check(cfg);
	else
		rc = daemon_serve(cfg);
	config_free(cfg);
	return rc;
}
