/* Set-up shared by the agent bridges (see include/agent_bridge.h). */
#include <stdlib.h>
#include <string.h>

#include "agent_bridge.h"
#include "agent_dir.h"
#include "agent_time.h"
#include "log.h"

#define BRIDGE_CONNECT_TIMEOUT_MS 10000L

static void
agent_bridge_renewed(void *arg, struct agent_cred *cred)
{
	struct agent_bridge *b = arg;

	if (agent_http_set_cred(b->http, cred) == -1)
		return;
	agent_cred_unref(b->cred);
	b->cred = agent_cred_ref(cred);
	log_info("new connections to the gateway use certificate serial %s; requests in "
	    "flight finish on their connections", agent_cred_serial(cred));
	if (b->renewed != NULL)
		b->renewed(b->renewed_arg, cred);
}

int
agent_bridge_open(struct agent_bridge *b, const char *what, const char *url,
    const char *dir, const char *renew_url)
{
	struct agent_url ru = { 0 };
	char err[600], when[40], left[32];
	time_t now = time(NULL);

	memset(b, 0, sizeof(*b));
	b->endpoint = url;
	if (!agent_cred_curl_usable()) {
		log_err("%s: libcurl is not built with OpenSSL (install libcurl4 from "
		    "Debian's libcurl4-openssl-dev flavour)", what);
		return -1;
	}
	if (agent_url_parse(url, &b->url, err, sizeof(err)) == -1) {
		log_err("%s: --url %s", what, err);
		goto fail;
	}
	if (renew_url != NULL && agent_url_parse(renew_url, &ru, err, sizeof(err)) == -1) {
		log_err("%s: --renew-url %s", what, err);
		goto fail;
	}
	if (agent_dir_load(dir, &b->cred) == -1)
		goto fail;
	if (now >= agent_cred_not_after(b->cred)) {
		log_err("%s: the certificate in %s (serial %s) expired at %s: enroll again "
		    "(certgate agent enroll) or have a new one issued", what, dir,
		    agent_cred_serial(b->cred), agent_time_iso(agent_cred_not_after(b->cred),
		    when, sizeof(when)));
		goto fail;
	}
	if (now < agent_cred_not_before(b->cred))
		log_warn("%s: the certificate in %s is valid only from %s (is the clock "
		    "right?)", what, dir, agent_time_iso(agent_cred_not_before(b->cred),
		    when, sizeof(when)));
	if (agent_cred_verify_chain(agent_cred_leaf(b->cred), agent_cred_chain(b->cred),
	    agent_cred_anchors(b->cred), err, sizeof(err)) == -1 &&
	    now >= agent_cred_not_before(b->cred)) {
		log_err("%s: the certificate in %s does not verify against its ca.pem: %s",
		    what, dir, err);
		goto fail;
	}
	if ((b->base = event_base_new()) == NULL ||
	    (b->http = agent_http_new(b->base, b->cred, BRIDGE_CONNECT_TIMEOUT_MS)) == NULL) {
		log_err("%s: out of memory", what);
		goto fail;
	}
	if ((b->renew = agent_renew_start(b->base, dir, renew_url ? ru.origin :
	    b->url.origin, b->cred, agent_bridge_renewed, b)) == NULL)
		goto fail;
	log_info("%s: gateway %s as %s (serial %s, %s key), certificate valid for %s; "
	    "renewal through %s", what, url, agent_cred_subject(b->cred),
	    agent_cred_serial(b->cred), agent_cred_key_uri(b->cred) ? "token" : "file",
	    agent_time_fmt((long)(agent_cred_not_after(b->cred) - now), left,
	    sizeof(left)), renew_url ? ru.origin : b->url.origin);
	agent_url_free(&ru);
	return 0;
fail:
	agent_url_free(&ru);
	agent_bridge_close(b);
	return -1;
}

void
agent_bridge_close(struct agent_bridge *b)
{
	agent_renew_stop(b->renew);
	b->renew = NULL;
	agent_http_free(b->http);
	b->http = NULL;
	agent_cred_unref(b->cred);
	b->cred = NULL;
	if (b->base != NULL)
		event_base_free(b->base);
	b->base = NULL;
	agent_url_free(&b->url);
}
