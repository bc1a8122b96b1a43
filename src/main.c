/* certgate: command dispatch. */
#include <getopt.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "agent.h"
#include "ca.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "p11.h"
#include "state.h"
#include "tls.h"

static void
usage(FILE *f)
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
	    "                    crl|list|token|serve\n");
	agent_usage_summary(f);
	fprintf(f,
	    "\n"
	    "  certgate COMMAND --help   help for one command\n"
	    "  certgate --version        print the version\n");
}

static void
usage_cmd(FILE *f, const char *cmd)
{
	if (strcmp(cmd, "serve") == 0)
		fprintf(f, "usage: certgate serve -c CONFIG\n\n"
		    "Runs the gateway in the foreground. SIGHUP reloads the identity map, the CRL\n"
		    "and the certificates (they are also reloaded when their files change);\n"
		    "SIGTERM/SIGINT stop accepting and finish in-flight requests.\n");
	else
		fprintf(f, "usage: certgate check -c CONFIG\n\n"
		    "Validates the configuration as a whole, opens the token, loads the keys and\n"
		    "certificates, prints \"configuration OK\" and exits 0, or prints every problem\n"
		    "found and exits 1.\n");
}

/* Parses "-c CONFIG" for serve/check. Returns the config path or NULL (usage printed). */
static const char *
parse_config_opt(int argc, char **argv, const char *cmd, int *help)
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
			usage_cmd(stdout, cmd);
			return NULL;
		default:
			usage_cmd(stderr, cmd);
			return NULL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "certgate %s: unexpected argument '%s'\n", cmd, argv[optind]);
		usage_cmd(stderr, cmd);
		return NULL;
	}
	if (path == NULL) {
		fprintf(stderr, "certgate %s: -c CONFIG is required\n", cmd);
		usage_cmd(stderr, cmd);
	}
	return path;
}

static int
load_config(const char *path, struct config **cfg)
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

static int
cmd_check(struct config *cfg)
{
	EVP_PKEY *key = NULL;
	int rc = 1;

	if (tls_load_server_key(cfg, &key) == -1)
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
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
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
	if (strcmp(argv[1], "serve") != 0 && strcmp(argv[1], "check") != 0) {
		fprintf(stderr, "certgate: unknown command '%s'\n", argv[1]);
		usage(stderr);
		return 2;
	}
	path = parse_config_opt(argc - 1, argv + 1, argv[1], &help);
	if (path == NULL)
		return help ? 0 : 2;
	if (load_config(path, &cfg) == -1)
		return 1;
	if (strcmp(argv[1], "check") == 0)
		rc = cmd_check(cfg);
	else
		rc = daemon_serve(cfg);
	config_free(cfg);
	return rc;
}
