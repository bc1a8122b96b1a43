/* `certgate audit summary`: the weekly review of the request audit log. Reads
 * audit.jsonl (the gateway's one-line-per-request log, audit.h) and prints, per
 * agent, the calls by tool and by method, the denials by reason and the source
 * addresses, over a time window.
 *
 * The aggregation (auditsum_new .. auditsum_format) is pure: lines in, text out;
 * auditsum_main reads the files, streaming line by line (a log is never read
 * whole). Memory is bounded by AUDITSUM_MAX_KEYS distinct values per counted
 * field per agent (the rest count as "(other)") and AUDITSUM_MAX_AGENTS agents,
 * so a client that calls a million tool names cannot exhaust it. Not thread-safe
 * (one owner). */
#ifndef CERTGATE_AUDITSUM_H
#define CERTGATE_AUDITSUM_H
#include <stddef.h>

#include "buf.h"

#define AUDITSUM_MAX_KEYS	1000
#define AUDITSUM_MAX_AGENTS	10000

struct auditsum;

/* since_ms/until_ms: the window [since, until) in milliseconds since the epoch;
 * 0 leaves that side open. NULL when out of memory. */
struct auditsum *auditsum_new(long long since_ms, long long until_ms);
void auditsum_free(struct auditsum *s);

/* Counts one line (without or with its newline). Returns 0 when counted, 1 when
 * outside the window, -1 when it is not an audit record (counted as malformed). */
int auditsum_line(struct auditsum *s, const char *line, size_t len);

/* Appends the summary: text for people, or (json) one JSON object. Returns 0/-1. */
int auditsum_format(const struct auditsum *s, int json, struct buf *out);

/* Parses a time for --since/--until: RFC 3339 ("2026-05-01T12:00:00Z", fraction
 * and numeric offset allowed), a date ("2026-05-01", midnight UTC), or a duration
 * before now_ms ("90m", "24h", "7d", "2w"). Returns 0 with *out_ms, or -1. Pure. */
int auditsum_parse_time(const char *s, long long now_ms, long long *out_ms);

/* Entry point of `certgate audit ...` (argv[0] is "audit"). Returns the exit code. */
int auditsum_main(int argc, char **argv);

#endif
