/* certgate agent: subcommands and their options (see include/agent.h). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "agent.h"
#include "agent_enroll.h"
#include "agent_listen.h"
#include "agent_renew.h"
#include "agent_stdio.h"
#include "file.h"
#include "log.h"
#include "p11.h"

#define AGENT_TOKEN_ENV      "CERTGATE_TOKEN"
#define AGENT_TOKEN_FILE_MAX 4096
/* Below the 10 s after which container runtimes follow SIGTERM with SIGKILL. */
#define AGENT_GRACE_S        8
#define AGENT_GRACE_MAX_S    3600

enum agent_cmd { CMD_ENROLL, CMD_RENEW, CMD_STDIO, CMD_LISTEN };

static const struct {
	const char *name;
	enum agent_cmd cmd;
	const char *usage;
} agent_cmds[] = {
	{ "enroll", CMD_ENROLL,
	"usage: certgate agent enroll --url https://HOST:PORT --agent ID --dir AGENTDIR\n"
	"           (--token-file FILE | --token TOKEN | env CERTGATE_TOKEN)\n"
	"           [--key pkcs11:URI] [--ca FILE] [--force]\n"
	"\n"
	"Gets the agent's first certificate from the gateway's enrollment listener over\n"
	"EST (RFC 7030) with a one-time token from scripts/agent-token, and writes\n"
	"AGENTDIR/cert.pem, AGENTDIR/ca.pem and AGENTDIR/key.pem (0600), or AGENTDIR/key.uri\n"
	"when the key is made inside a PKCS#11 token.\n"
	"\n"
	"The server is never trusted blindly: the token carries the SHA-256 fingerprint of\n"
	"the CA; the CA certificates the server offers are checked against it before\n"
	"anything is sent, and the enrollment runs over TLS verified with that CA only\n"
	"(or with --ca FILE).\n"
	"\n"
	"options:\n"
	"  --url URL          the enrollment listener, https://HOST:PORT\n"
	"  --agent ID         the agent id the token was made for\n"
	"  --dir AGENTDIR     where the files go (created 0700)\n"
	"  --token-file FILE  read the token from FILE (first line)\n"
	"  --token TOKEN      the token itself: convenient, but visible in ps and shell\n"
	"                     history; prefer --token-file or CERTGATE_TOKEN\n"
	"  --key pkcs11:URI   make the key in a PKCS#11 token, e.g.\n"
	"                     'pkcs11:token=agent;object=bot-key?pin-source=file:/path/pin'\n"
	"                     (module: module-path= in the URI or CERTGATE_PKCS11_MODULE;\n"
	"                     PIN: pin-source= or CERTGATE_PKCS11_PIN; pin-value is refused)\n"
	"  --ca FILE          trust FILE's CA certificate(s) instead of the fingerprint\n"
	"  --force            replace a certificate already in AGENTDIR\n" },
	{ "renew", CMD_RENEW,
	"usage: certgate agent renew --url https://HOST:PORT --dir AGENTDIR\n"
	"\n"
	"Renews the certificate in AGENTDIR over EST (/simplereenroll), authenticated by\n"
	"the current certificate: a new key of the same kind in the same place (a new\n"
	"key.pem, or a new key in the same token under a new label), then cert.pem and\n"
	"the key are replaced so that a crash never leaves a key that does not match the\n"
	"certificate. --url is the gateway's mTLS or enrollment listener (its origin).\n" },
	{ "stdio", CMD_STDIO,
	"usage: certgate agent stdio --url https://HOST:PORT/PATH --dir AGENTDIR\n"
	"           [--renew-url https://HOST:PORT]\n"
	"\n"
	"An MCP server on stdin/stdout (newline-delimited JSON-RPC) that relays every\n"
	"message to the gateway's MCP endpoint over Streamable HTTP with the agent's\n"
	"certificate: what a desktop MCP client runs as its server \"command\". Logs go to\n"
	"stderr. The certificate is renewed in the background at 2/3 of its lifetime\n"
	"(through --renew-url, default the --url's origin).\n" },
	{ "listen", CMD_LISTEN,
	"usage: certgate agent listen --listen 127.0.0.1:PORT --url https://HOST:PORT/PATH\n"
	"           --dir AGENTDIR [--renew-url https://HOST:PORT] [--allow-remote]\n"
	"           [--grace SECONDS]\n"
	"\n"
	"A plain-HTTP listener that forwards requests for the --url's path to the gateway\n"
	"over HTTPS with the agent's certificate, for MCP clients that speak Streamable\n"
	"HTTP but cannot present a client certificate, e.g.\n"
	"  npx mcp-remote http://127.0.0.1:PORT/PATH --allow-http\n"
	"Anyone who can connect to the listener acts as this agent, so it binds loopback\n"
	"addresses only; --allow-remote lifts that (put something that authenticates in\n"
	"front of it). The certificate is renewed in the background as for stdio.\n"
	"\n"
	"On SIGTERM or SIGINT it stops accepting connections, closes idle ones and GET\n"
	"streams, lets the requests in flight finish for up to --grace seconds (default\n"
	"8), then exits; a second signal exits at once.\n" },
};

#define AGENT_NCMDS (sizeof(agent_cmds) / sizeof(agent_cmds[0]))

void
agent_usage_summary(FILE *f)
{
	fprintf(f,
	    "  agent SUBCOMMAND  the client side, for MCP clients without mTLS:\n"
	    "                    enroll|renew|stdio|listen (certgate agent --help)\n");
}

static void
agent_usage(FILE *f)
{
	fprintf(f,
	    "usage: certgate agent SUBCOMMAND [options]\n"
	    "\n"
	    "The client side of certgate: an agent's certificate and key (in a file or a\n"
	    "PKCS#11 token), and bridges for MCP clients that cannot do mTLS.\n"
	    "\n"
	    "subcommands:\n"
	    "  enroll   first certificate over EST with a one-time token\n"
	    "  renew    renew the certificate with the current one\n"
	    "  stdio    MCP stdio server relaying to the gateway (desktop clients' \"command\")\n"
	    "  listen   loopback plain-HTTP forwarder to the gateway (mcp-remote --allow-http)\n"
	    "\n"
	    "  certgate agent SUBCOMMAND --help   options of one subcommand\n");
}

struct agent_opts {
	const char *url, *dir, *agent, *token_file, *key, *ca, *listen, *renew_url;
	char *token;
	int force, allow_remote, grace_s;
};

/* The token from its file: first line, surrounding whitespace removed. */
static char *
agent_token_from_file(const char *path)
{
	struct stat st;
	char *data = NULL, *s, *e, *tok;
	size_t len;

	if (file_read(path, AGENT_TOKEN_FILE_MAX, &data, &len) == -1) {
		log_err("--token-file %s: %s", path, strerror(errno));
		return NULL;
	}
	if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
		log_warn("%s is readable by others (mode %03o): a token is a secret",
		    path, (unsigned)(st.st_mode & 0777));
	for (s = data; *s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'; s++)
		;
	e = s + strcspn(s, "\r\n");
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	tok = strndup(s, (size_t)(e - s));
	explicit_bzero(data, len);
	free(data);
	if (tok == NULL)
		log_err("out of memory");
	else if (*tok == '\0') {
		log_err("--token-file %s is empty", path);
		free(tok);
		tok = NULL;
	}
	return tok;
}

/* Exactly one source of the token; argv and environment copies are wiped. */
static char *
agent_token(struct agent_opts *o, char *argv_token)
{
	char *env = getenv(AGENT_TOKEN_ENV), *t;

	if (argv_token != NULL && o->token_file != NULL) {
		log_err("give the token once: --token or --token-file");
		return NULL;
	}
	if (o->token_file != NULL)
		return agent_token_from_file(o->token_file);
	if (argv_token != NULL) {
		log_info("--token is visible to other users in ps while this runs; prefer "
		    "--token-file or %s", AGENT_TOKEN_ENV);
		t = strdup(argv_token);
		explicit_bzero(argv_token, strlen(argv_token));
		return t;
	}
	if (env != NULL && *env != '\0') {
		t = strdup(env);
		explicit_bzero(env, strlen(env));
		unsetenv(AGENT_TOKEN_ENV);
		return t;
	}
	log_err("no enrollment token: --token-file FILE, %s in the environment, or "
	    "--token TOKEN", AGENT_TOKEN_ENV);
	return NULL;
}

static int
agent_require(const char *cmd, const char *v, const char *opt)
{
	if (v == NULL || *v == '\0') {
		fprintf(stderr, "certgate agent %s: %s is required (see --help)\n", cmd, opt);
		return -1;
	}
	return 0;
}

/* Parses the options of subcommand c. Returns 0, 1 (help printed) or -1. */
static int
agent_parse(size_t c, int argc, char **argv, struct agent_opts *o, char **argv_token)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "dir", required_argument, NULL, 'd' },
		{ "agent", required_argument, NULL, 'a' },
		{ "token", required_argument, NULL, 't' },
		{ "token-file", required_argument, NULL, 'T' },
		{ "key", required_argument, NULL, 'k' },
		{ "ca", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "renew-url", required_argument, NULL, 'r' },
		{ "force", no_argument, NULL, 'f' },
		{ "allow-remote", no_argument, NULL, 'R' },
		{ "grace", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const allowed[AGENT_NCMDS] = {
		[CMD_ENROLL] = "udatTkcf",
		[CMD_RENEW] = "ud",
		[CMD_STDIO] = "udr",
		[CMD_LISTEN] = "udlrRg",
	};
	const char *name = agent_cmds[c].name;
	char *end;
	long v;
	int ch;

	memset(o, 0, sizeof(*o));
	o->grace_s = AGENT_GRACE_S;
	*argv_token = NULL;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (ch == 'h') {
			fputs(agent_cmds[c].usage, stdout);
			return 1;
		}
		if (ch == '?' || ch == ':') {
			fprintf(stderr, "certgate agent %s: %s '%s'\n", name, ch == ':' ?
			    "missing value for" : "unknown option", argv[optind - 1]);
			fputs(agent_cmds[c].usage, stderr);
			return -1;
		}
		if (strchr(allowed[agent_cmds[c].cmd], ch) == NULL) {
			fprintf(stderr, "certgate agent %s: option '%s' does not apply here\n",
			    name, argv[optind - 1]);
			fputs(agent_cmds[c].usage, stderr);
			return -1;
		}
		switch (ch) {
		case 'u': o->url = optarg; break;
		case 'd': o->dir = optarg; break;
		case 'a': o->agent = optarg; break;
		case 't': *argv_token = optarg; break;
		case 'T': o->token_file = optarg; break;
		case 'k': o->key = optarg; break;
		case 'c': o->ca = optarg; break;
		case 'l': o->listen = optarg; break;
		case 'r': o->renew_url = optarg; break;
		case 'f': o->force = 1; break;
		case 'R': o->allow_remote = 1; break;
		case 'g':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || v < 0 ||
			    v > AGENT_GRACE_MAX_S) {
				fprintf(stderr, "certgate agent %s: --grace wants whole seconds "
				    "from 0 to %d, got '%s'\n", name, AGENT_GRACE_MAX_S, optarg);
				return -1;
			}
			o->grace_s = (int)v;
			break;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "certgate agent %s: unexpected argument '%s'\n", name,
		    argv[optind]);
		return -1;
	}
	if (agent_require(name, o->url, "--url") == -1 ||
	    agent_require(name, o->dir, "--dir") == -1)
		return -1;
	if (agent_cmds[c].cmd == CMD_ENROLL && agent_require(name, o->agent,
	    "--agent") == -1)
		return -1;
	if (agent_cmds[c].cmd == CMD_LISTEN && agent_require(name, o->listen,
	    "--listen") == -1)
		return -1;
	return 0;
}

static int
agent_run(size_t c, struct agent_opts *o, char *argv_token)
{
	struct agent_enroll_args ea = { 0 };
	struct agent_stdio_args sa = { 0 };
	struct agent_listen_args la = { 0 };

	switch (agent_cmds[c].cmd) {
	case CMD_ENROLL:
		ea.url = o->url;
		ea.agent = o->agent;
		ea.dir = o->dir;
		ea.key_uri = o->key;
		ea.ca_file = o->ca;
		ea.force = o->force;
		if ((ea.token = agent_token(o, argv_token)) == NULL)
			return 1;
		return agent_enroll_run(&ea);
	case CMD_RENEW:
		return agent_renew_run(o->url, o->dir);
	case CMD_STDIO:
		sa.url = o->url;
		sa.dir = o->dir;
		sa.renew_url = o->renew_url;
		return agent_stdio_run(&sa);
	case CMD_LISTEN:
		la.listen = o->listen;
		la.url = o->url;
		la.dir = o->dir;
		la.renew_url = o->renew_url;
		la.allow_remote = o->allow_remote;
		la.grace_s = o->grace_s;
		return agent_listen_run(&la);
	}
	return 2;
}

int
agent_main(int argc, char **argv)
{
	struct agent_opts o;
	char *argv_token;
	size_t c;
	int rc;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		agent_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (c = 0; c < AGENT_NCMDS; c++)
		if (strcmp(argv[1], agent_cmds[c].name) == 0)
			break;
	if (c == AGENT_NCMDS) {
		fprintf(stderr, "certgate agent: unknown subcommand '%s'\n", argv[1]);
		agent_usage(stderr);
		return 2;
	}
	rc = agent_parse(c, argc - 1, argv + 1, &o, &argv_token);
	if (rc != 0)
		return rc == 1 ? 0 : 2;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_err("libcurl failed to initialise");
		return 1;
	}
	rc = agent_run(c, &o, argv_token);
	curl_global_cleanup();
	p11_shutdown();
	return rc;
}
