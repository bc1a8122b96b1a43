/* Fuzz target: certgate.json parsing and validation (config_parse, flags 0, so no
 * file is touched) and the JSON-path-to-line map behind its messages. A parse either
 * gives a config and no error, or no config and at least one well-formed error;
 * a config that parsed has its required fields and values inside their ranges. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NAME "fuzz.json"

static const char *const paths[] = { "$", "$.listen", "$.tls.key", "$.tls",
	"$.limits.max_body_bytes", "$.upstream.url", "$.a[2]", "$[\"odd key\"]",
	"$.ca.trust_domain", "$.x[0].y[1]", "$[\"a\\\"b\"].c", "$[\"", "$[", "$..", NULL };

static void
check_errors(const struct strlist *errs, int ok)
{
	size_t i;

	if (!ok && errs->n == 0)
		abort();
	if (ok && errs->n != 0)
		abort();
	for (i = 0; i < errs->n; i++) {
		/* "NAME:LINE: $...: message" */
		if (errs->v[i] == NULL || strncmp(errs->v[i], NAME ":", sizeof(NAME)) != 0 ||
		    strstr(errs->v[i], ": $") == NULL)
			abort();
	}
}

static void
check_config(const struct config *c)
{
	if (c->path == NULL || strcmp(c->path, NAME) != 0 || c->dir == NULL)
		abort();
	if (c->listen_host == NULL || c->identity_map == NULL || c->tls.cert == NULL ||
	    c->tls.ca == NULL || (c->tls.crl_check && c->tls.crl == NULL))
		abort();
	/* relative paths resolve against the config directory */
	if (c->identity_map[0] != '/' || c->tls.cert[0] != '/')
		abort();
	if (c->upstream.url == NULL || c->upstream.host == NULL || c->upstream.path == NULL ||
	    c->upstream.path[0] != '/')
		abort();
	if (c->limits.max_header_bytes <= 0 || c->limits.max_header_count <= 0 ||
	    c->limits.max_body_bytes <= 0 || c->workers < 0)
		abort();
	if (c->admin_host != NULL && c->admin_host[0] == '\0')
		abort();
}

/* config_line_of with a path taken from the input: its last line, at most 255 bytes */
static void
line_of_input_path(const char *text, size_t len)
{
	char path[256];
	const char *nl;
	size_t n;

	nl = len > 0 ? memrchr(text, '\n', len) : NULL;
	n = nl ? len - (size_t)(nl + 1 - text) : len;
	if (n >= sizeof(path))
		n = sizeof(path) - 1;
	memcpy(path, text + len - n, n);
	path[n] = '\0';
	if (config_line_of(text, len, path) < 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strlist errs = { 0 };
	struct config *cfg = NULL;
	const char *text = (const char *)data;
	int rc, i, line;

	rc = config_parse(text, size, NAME, "/nonexistent", 0, &cfg, &errs);
	if ((rc == 0) != (cfg != NULL) || (rc != 0 && rc != -1))
		abort();
	check_errors(&errs, rc == 0);
	if (cfg != NULL)
		check_config(cfg);
	config_free(cfg);
	strlist_free(&errs);

	for (i = 0; paths[i]; i++) {
		line = config_line_of(text, size, paths[i]);
		/* never past the last line of the text */
		if (line < 0 || (size_t)line > size + 1)
			abort();
	}
	line_of_input_path(text, size);
	return 0;
}
