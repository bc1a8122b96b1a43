/* What the two bridges (certgate agent stdio and certgate agent listen) share: the
 * credential loaded from AGENTDIR and checked, the gateway URL, the event loop, the
 * HTTPS client (agent_http.h) and background renewal (agent_renew.h) wired so that
 * every renewed certificate becomes the client's new generation.
 *
 * Loop thread only. */
#ifndef CERTGATE_AGENT_BRIDGE_H
#define CERTGATE_AGENT_BRIDGE_H
#include <event2/event.h>

#include "agent_cred.h"
#include "agent_http.h"
#include "agent_renew.h"
#include "agent_url.h"

/* Called after the client switched to a renewed credential (borrowed). */
typedef void (*agent_bridge_renewed_fn)(void *arg, struct agent_cred *cred);

struct agent_bridge {
	struct event_base *base;
	struct agent_http *http;
	struct agent_renew *renew;
	struct agent_cred *cred;       /* current generation (a reference) */
	struct agent_url url;          /* the gateway's MCP URL, parsed */
	const char *endpoint;          /* the URL as given (borrowed) */
	agent_bridge_renewed_fn renewed;
	void *renewed_arg;
};

/* Fills b: parses url (and renew_url, default url's origin), loads dir, refuses an
 * expired or not yet valid certificate and one that does not verify against
 * ca.pem, makes the event base, the HTTPS client and the renewal schedule, and logs
 * what it is about to do. what names the command in messages. Returns 0, or -1
 * with the reason logged (b is then cleaned up). */
int agent_bridge_open(struct agent_bridge *b, const char *what, const char *url,
    const char *dir, const char *renew_url);

/* Frees everything agent_bridge_open made. Safe on a zeroed b. */
void agent_bridge_close(struct agent_bridge *b);

#endif
