/* Replays fuzz inputs without libFuzzer: runs LLVMFuzzerTestOneInput over every regular
 * file in the directories (or files) given as arguments, so corpora and findings can be
 * checked with any compiler. Exit 0 when every input ran; a crash or abort fails. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
replay_file(const char *path)
{
	unsigned char *buf = NULL;
	struct stat st;
	size_t n = 0;
	FILE *f;

	if ((f = fopen(path, "rb")) == NULL || fstat(fileno(f), &st) == -1) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		if (f != NULL)
			fclose(f);
		return -1;
	}
	/* copy into an exact-size buffer so ASan catches reads past the input */
	if (st.st_size > 0 && (buf = malloc((size_t)st.st_size)) == NULL) {
		fclose(f);
		return -1;
	}
	if (st.st_size > 0)
		n = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf != NULL ? buf : (const uint8_t *)"", n);
	free(buf);
	return 0;
}

static int
replay_path(const char *path, int *count)
{
	struct dirent *de;
	struct stat st;
	char sub[4096];
	DIR *d;
	int rv = 0;

	if (stat(path, &st) == -1) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return replay_file(path);
	}
	if ((d = opendir(path)) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (stat(sub, &st) == 0 && S_ISREG(st.st_mode)) {
			(*count)++;
			if (replay_file(sub) == -1)
				rv = -1;
		}
	}
	closedir(d);
	return rv;
}

int
main(int argc, char **argv)
{
	int i, count = 0, rv = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++)
		if (replay_path(argv[i], &count) == -1)
			rv = 1;
	printf("%d inputs replayed\n", count);
	return rv;
}
