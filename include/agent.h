/* certgate agent: the client side of certgate, for MCP clients that cannot present
 * a client certificate themselves. Subcommands (src/agent.c parses the options and
 * hands over to one file each):
 *   enroll   get a first certificate over EST with a one-time token (agent_enroll.h)
 *   renew    renew the certificate with the current one (agent_renew.h)
 *   stdio    an MCP stdio server relaying to the gateway (agent_stdio.h)
 *   listen   a loopback plain-HTTP forwarder to the gateway (agent_listen.h)
 * Start-up only; runs on the main thread. */
#ifndef CERTGATE_AGENT_H
#define CERTGATE_AGENT_H
#include <stdio.h>

/* argv[0] is "agent". Returns the process exit status (2 for usage errors). */
int agent_main(int argc, char **argv);

/* The one-paragraph summary for `certgate --help`. */
void agent_usage_summary(FILE *f);

#endif
