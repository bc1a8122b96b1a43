/* Process metrics in the names every Prometheus client library uses
 * (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds), read from /proc/self on each scrape.
 *
 * procstat_parse_stat is pure (tested on its own); procstat_read does the reads;
 * procstat_register adds the renderer to /metrics (metrics.h). Any thread. */
#ifndef CERTGATE_PROCSTAT_H
#define CERTGATE_PROCSTAT_H
#include <stddef.h>

struct procstat {
	double cpu_seconds;             /* user + system */
	double start_time;              /* seconds since the epoch */
	unsigned long long vsize;       /* bytes */
	unsigned long long rss;         /* bytes */
	long open_fds;                  /* -1 when unknown */
	long long max_fds;              /* soft RLIMIT_NOFILE, -1 when unknown */
};

/* Parses the text of /proc/PID/stat: clk_tck ticks per second, page_size bytes,
 * boot_time the boot time in seconds since the epoch. The command name (field 2) may hold spaces
 * and parentheses: fields are counted after its last ')'. Returns 0, or -1 when
 * the text is not in that format. Fills cpu_seconds, start_time, vsize, rss. */
int procstat_parse_stat(const char *text, size_t len, long clk_tck, long page_size,
    double boot_time, struct procstat *out);

/* Reads the calling process's figures. Returns 0, or -1 when /proc is unreadable. */
int procstat_read(struct procstat *out);

/* Registers the /metrics renderer (idempotent). Returns 0/-1. */
int procstat_register(void);

#endif
