/* HTTP/1.1 proxying of MCP traffic (src/proxy.c): the request/response state machine
 * on an established mTLS connection. Requests are parsed (http.h), decided (decide.h:
 * identity, revocation, rate, HTTP rules, sessions), their bodies inspected against
 * the agent's scopes (mcp.h), audited, and forwarded through the worker's upstream
 * pool (upstream.h) with heads certgate builds itself (head.h); responses stream back,
 * listings filtered.
 *
 * The proxy is the gateway listener's application: the daemon gives proxy_app to the
 * workers, the connection layer calls its handlers (conn.h). Nothing else is public. */
#ifndef CERTGATE_PROXY_H
#define CERTGATE_PROXY_H
#include "conn.h"

extern const struct conn_app proxy_app;

#endif
