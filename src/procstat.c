/* Process metrics from /proc/self (procstat.h). */
#include "procstat.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "file.h"
#include "metrics.h"

#define PROCSTAT_MAX_FILE	(64 * 1024)

int
procstat_parse_stat(const char *text, size_t len, long clk_tck, long page_size,
    double boot_time, struct procstat *out)
{
	unsigned long long v[24];
	const char *p = NULL, *end = text + len;
	size_t i;
	int field;
	const char *q;

	if (text == NULL || clk_tck <= 0 || page_size <= 0)
		return -1;
	for (i = 0; i < len; i++)
		if (text[i] == ')')
			p = text + i;
	if (p == NULL)
		return -1;
	p++;
	/* Field 3 (state) is a letter; 4.. are numbers. v[k] is field k + 1. */
	for (field = 3; field <= 24; field++) {
		while (p < end && *p == ' ')
			p++;
		if (p >= end || *p == '\n')
			return -1;
		if (field == 3) {
			while (p < end && *p != ' ')
				p++;
			continue;
		}
		if (*p == '-') {
			/* Signed fields (priority, nice): not used, skip them. */
			v[field - 1] = 0;
			while (p < end && *p != ' ')
				p++;
			continue;
		}
		/* By hand: the text need not be NUL-terminated, strtoull would run on. */
		for (q = p, v[field - 1] = 0; q < end && *q >= '0' && *q <= '9'; q++) {
			if (v[field - 1] > (ULLONG_MAX - (unsigned)(*q - '0')) / 10)
				return -1;
			v[field - 1] = v[field - 1] * 10 + (unsigned)(*q - '0');
		}
		if (q == p || (q < end && *q != ' ' && *q != '\n'))
			return -1;
		p = q;
	}
	out->cpu_seconds = (double)(v[13] + v[14]) / (double)clk_tck;
	out->start_time = boot_time + (double)v[21] / (double)clk_tck;
	out->vsize = v[22];
	out->rss = v[23] * (unsigned long long)page_size;
	return 0;
}

/* The boot time from the clocks rather than /proc/stat's btime, which the systemd
 * unit's ProcSubset=pid hides. Computed once: it is constant while the machine runs,
 * and process_start_time_seconds must not jitter between scrapes. */
static double procstat_boot;
static pthread_once_t procstat_once = PTHREAD_ONCE_INIT;

static void
procstat_boot_time(void)
{
	struct timespec rt, bt;

	if (clock_gettime(CLOCK_REALTIME, &rt) == 0 && clock_gettime(CLOCK_BOOTTIME, &bt) == 0)
		procstat_boot = (double)(rt.tv_sec - bt.tv_sec) +
		    (double)(rt.tv_nsec - bt.tv_nsec) / 1e9;
}

static long
procstat_count_fds(void)
{
	struct dirent *de;
	DIR *d;
	long n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;   /* the descriptor opendir holds */
}

int
procstat_read(struct procstat *out)
{
	struct rlimit rl;
	size_t len;
	char *text;
	int rc;

	memset(out, 0, sizeof(*out));
	pthread_once(&procstat_once, procstat_boot_time);
	if (file_read("/proc/self/stat", PROCSTAT_MAX_FILE, &text, &len) == -1)
		return -1;
	rc = procstat_parse_stat(text, len, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE),
	    procstat_boot, out);
	free(text);
	out->open_fds = procstat_count_fds();
	out->max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ?
	    (long long)rl.rlim_cur : -1;
	return rc;
}

static void
procstat_put(FILE *f, const char *name, const char *type, const char *help, double v)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static void
procstat_metrics(FILE *f)
{
	struct procstat ps;

	if (procstat_read(&ps) == -1)
		return;
	procstat_put(f, "process_cpu_seconds_total", "counter",
	    "Total user and system CPU time spent in seconds.", ps.cpu_seconds);
	procstat_put(f, "process_resident_memory_bytes", "gauge",
	    "Resident memory size in bytes.", (double)ps.rss);
	procstat_put(f, "process_virtual_memory_bytes", "gauge",
	    "Virtual memory size in bytes.", (double)ps.vsize);
	procstat_put(f, "process_start_time_seconds", "gauge",
	    "Start time of the process since unix epoch in seconds.", ps.start_time);
	if (ps.open_fds >= 0)
		procstat_put(f, "process_open_fds", "gauge", "Number of open file descriptors.",
		    (double)ps.open_fds);
	if (ps.max_fds >= 0)
		procstat_put(f, "process_max_fds", "gauge",
		    "Maximum number of open file descriptors.", (double)ps.max_fds);
}

int
procstat_register(void)
{
	return metrics_add_renderer(procstat_metrics);
}
