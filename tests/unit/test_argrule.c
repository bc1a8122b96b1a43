/* argrule.c: path normalization (traversal spellings), rule grammar and load-time
 * errors, and decisions on tools/call arguments (table-driven). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argrule.h"
#include "check.h"

struct norm_case {
	const char *in;
	size_t len;           /* 0: strlen(in) */
	const char *out;      /* NULL: refused */
	const char *why;      /* substring of the refusal */
};

static const struct norm_case norm_cases[] = {
	{ "/", 0, "/", NULL },
	{ "/srv/data", 0, "/srv/data", NULL },
	{ "/srv/data/", 0, "/srv/data", NULL },
	{ "//srv//data//", 0, "/srv/data", NULL },
	{ "/srv/./data/.", 0, "/srv/data", NULL },
	{ "/srv/data/../etc", 0, "/srv/etc", NULL },
	{ "/srv/data/./../x", 0, "/srv/x", NULL },
	{ "/srv/data/a/b/../../c", 0, "/srv/data/c", NULL },
	{ "/..", 0, "/", NULL },
	{ "/../../etc/passwd", 0, "/etc/passwd", NULL },
	{ "/srv/data/..", 0, "/srv", NULL },
	{ "/srv/data/...", 0, "/srv/data/...", NULL },     /* "..." is a name */
	{ "/srv/data/..a", 0, "/srv/data/..a", NULL },
	{ "/srv/data/a..", 0, "/srv/data/a..", NULL },
	{ "/srv/data/.hidden", 0, "/srv/data/.hidden", NULL },
	{ "/srv/data/naïve.txt", 0, "/srv/data/naïve.txt", NULL },
	{ "/srv/data/日本語/ファイル", 0, "/srv/data/日本語/ファイル", NULL },
	{ "/srv/data/😀", 0, "/srv/data/😀", NULL },
	{ "/srv/data/a b", 0, "/srv/data/a b", NULL },
	{ "", 0, NULL, "empty" },
	{ "srv/data", 0, NULL, "not an absolute path" },
	{ "./srv", 0, NULL, "not an absolute path" },
	{ "../etc/passwd", 0, NULL, "not an absolute path" },
	{ "~/x", 0, NULL, "not an absolute path" },
	{ "~", 0, NULL, "not an absolute path" },
	{ "file:///etc/passwd", 0, NULL, "not an absolute path" },
	{ "C:/x", 0, NULL, "not an absolute path" },
	{ "/srv/data/%2e%2e/etc", 0, NULL, "percent" },
	{ "/srv/data/..%2fetc", 0, NULL, "percent" },
	{ "/srv/data/%2E%2E%2Fetc", 0, NULL, "percent" },
	{ "/srv/data/%252e%252e", 0, NULL, "percent" },
	{ "/srv/data/100%", 0, NULL, "percent" },
	{ "/srv/data/\\..\\etc", 0, NULL, "backslash" },
	{ "\\srv\\data", 0, NULL, "backslash" },
	{ "/srv/data/a\0/../../etc", 21, NULL, "NUL" },
	{ "/srv/data/\n", 0, NULL, "control" },
	{ "/srv/data/\t", 0, NULL, "control" },
	{ "/srv/data/\x7f", 0, NULL, "control" },
	{ "/srv/data/\xc2\x85", 0, NULL, "control" },          /* U+0085 NEL */
	{ "/srv/data/\xef\xbc\x8e\xef\xbc\x8e/etc", 0, NULL, "dot, slash" },  /* U+FF0E */
	{ "/srv/data\xef\xbc\x8f..", 0, NULL, "dot, slash" },    /* U+FF0F */
	{ "/srv/data/\xe2\x80\xa5", 0, NULL, "dot, slash" },     /* U+2025 two dot leader */
	{ "/srv/data/\xef\xbc\xbc", 0, NULL, "dot, slash" },     /* U+FF3C */
	{ "/srv/data/\xc0\xae\xc0\xae", 0, NULL, "UTF-8" },      /* overlong '.' */
	{ "/srv/data/\xe0\x80\xae", 0, NULL, "UTF-8" },          /* overlong '.' */
	{ "/srv/data/\xed\xa0\x80", 0, NULL, "UTF-8" },          /* surrogate */
	{ "/srv/data/\xff", 0, NULL, "UTF-8" },
	{ "/srv/data/\xe6\x97", 0, NULL, "UTF-8" },              /* truncated */
};

static void
test_normalize(void)
{
	char out[256];
	const char *why;
	size_t i, len;
	int rc;

	for (i = 0; i < sizeof(norm_cases) / sizeof(norm_cases[0]); i++) {
		const struct norm_case *c = &norm_cases[i];

		len = c->len ? c->len : strlen(c->in);
		why = NULL;
		rc = argrule_path_normalize(c->in, len, out, sizeof(out), &why);
		if (c->out != NULL) {
			if (rc != 0 || strcmp(out, c->out) != 0)
				fprintf(stderr, "normalize case %zu (%s): rc %d out \"%s\" why %s\n",
				    i, c->in, rc, rc == 0 ? out : "", why ? why : "-");
			CHECK(rc == 0);
			if (rc == 0)
				CHECK_STR(out, c->out);
		} else {
			if (rc != -1 || why == NULL || strstr(why, c->why) == NULL)
				fprintf(stderr, "normalize case %zu (%s): rc %d why %s\n", i, c->in,
				    rc, why ? why : "-");
			CHECK(rc == -1);
			CHECK(why != NULL && strstr(why, c->why) != NULL);
		}
	}
	/* output buffer must hold len + 1 */
	CHECK(argrule_path_normalize("/abc", 4, out, 4, &why) == -1);
	CHECK(argrule_path_normalize("/abc", 4, out, 5, &why) == 0);
	CHECK(argrule_path_normalize("/abc", 4, out, 5, NULL) == 0);
	/* length cap */
	{
		char *big = malloc(ARGRULE_PATH_MAX + 2), *o = malloc(ARGRULE_PATH_MAX + 2);

		if (big != NULL && o != NULL) {
			memset(big, 'a', ARGRULE_PATH_MAX + 1);
			big[0] = '/';
			CHECK(argrule_path_normalize(big, ARGRULE_PATH_MAX, o, ARGRULE_PATH_MAX + 2,
			    &why) == 0);
			CHECK(argrule_path_normalize(big, ARGRULE_PATH_MAX + 1, o,
			    ARGRULE_PATH_MAX + 2, &why) == -1);
		}
		free(big);
		free(o);
	}
}

struct under_case {
	const char *p, *dir;
	int under;
};

static const struct under_case under_cases[] = {
	{ "/srv/data", "/srv/data", 1 },
	{ "/srv/data/x", "/srv/data", 1 },
	{ "/srv/data/x/y", "/srv/data", 1 },
	{ "/srv/data2", "/srv/data", 0 },
	{ "/srv/dat", "/srv/data", 0 },
	{ "/srv", "/srv/data", 0 },
	{ "/etc/passwd", "/srv/data", 0 },
	{ "/anything", "/", 1 },
	{ "/", "/", 1 },
	{ "/", "/srv", 0 },
	{ "relative", "/", 0 },
};

static void
test_under(void)
{
	size_t i;

	for (i = 0; i < sizeof(under_cases) / sizeof(under_cases[0]); i++)
		CHECK(argrule_path_under(under_cases[i].p, under_cases[i].dir) ==
		    under_cases[i].under);
	CHECK(argrule_path_under(NULL, "/") == 0);
	CHECK(argrule_path_under("/", NULL) == 0);
}

/* Load-time errors: each needs a phrase in the message. */
struct bad_case {
	const char *json;
	const char *needle;
};

static const struct bad_case bad_cases[] = {
	{ "[]", "must be an object of tool globs" },
	{ "{\"\": {\"path\": {\"glob\": \"*\"}}}", "tool globs must be non-empty" },
	{ "{\"read_*\": {}}", "tool \"read_*\": must be a non-empty object" },
	{ "{\"read_*\": []}", "must be a non-empty object" },
	{ "{\"read_*\": {\"\": {\"glob\": \"*\"}}}", "argument names must be non-empty" },
	{ "{\"read_*\": {\"a\\u0001\": {\"glob\": \"*\"}}}", "control characters" },
	{ "{\"read_*\": {\"path\": \"/srv\"}}", "argument \"path\": the rule must be an object" },
	{ "{\"read_*\": {\"path\": {}}}", "has no check" },
	{ "{\"read_*\": {\"path\": {\"optional\": true}}}", "has no check" },
	{ "{\"read_*\": {\"path\": {\"optional\": 1, \"glob\": \"*\"}}}", "optional must be true or false" },
	{ "{\"read_*\": {\"path\": {\"path_undr\": \"/srv\"}}}", "unknown key \"path_undr\"" },
	{ "{\"read_*\": {\"path\": {\"required\": true, \"glob\": \"*\"}}}", "unknown key \"required\"" },
	{ "{\"read_*\": {\"path\": {\"path_under\": \"srv/data\"}}}", "\"srv/data\" is not an absolute directory" },
	{ "{\"read_*\": {\"path\": {\"path_under\": \"\"}}}", "non-empty string" },
	{ "{\"read_*\": {\"path\": {\"path_under\": 5}}}", "path_under must be a string" },
	{ "{\"read_*\": {\"path\": {\"path_under\": []}}}", "non-empty array" },
	{ "{\"read_*\": {\"path\": {\"path_under\": [\"/a\", 1]}}}", "entry 1 must be" },
	{ "{\"read_*\": {\"path\": {\"path_under\": \"/srv/../etc\"}}}", "\".\" or \"..\" segment" },
	{ "{\"read_*\": {\"path\": {\"path_under\": \"/srv/.\"}}}", "\".\" or \"..\" segment" },
	{ "{\"read_*\": {\"path\": {\"path_under\": \"/srv/%2e\"}}}", "percent" },
	{ "{\"read_*\": {\"path\": {\"path_under\": \"/srv\\\\x\"}}}", "backslash" },
	{ "{\"read_*\": {\"path\": {\"glob\": []}}}", "glob must be a string or a non-empty array" },
	{ "{\"read_*\": {\"path\": {\"enum\": []}}}", "enum must be a non-empty array" },
	{ "{\"read_*\": {\"path\": {\"enum\": \"a\"}}}", "enum must be a non-empty array" },
	{ "{\"read_*\": {\"path\": {\"enum\": [[1]]}}}", "entry 0 must be a string, number" },
	{ "{\"read_*\": {\"path\": {\"enum\": [{}]}}}", "entry 0 must be a string, number" },
	{ "{\"read_*\": {\"path\": {\"max_length\": -1}}}", "max_length must be an integer >= 0" },
	{ "{\"read_*\": {\"path\": {\"max_length\": 1.5}}}", "max_length must be an integer >= 0" },
	{ "{\"read_*\": {\"path\": {\"max_length\": \"5\"}}}", "max_length must be an integer" },
	{ "{\"read_*\": {\"path\": {\"pattern\": \"(\"}}}", "pattern \"(\": missing closing parenthesis at offset 1" },
	{ "{\"read_*\": {\"path\": {\"pattern\": \"[a-\"}}}", "pattern \"[a-\"" },
	{ "{\"read_*\": {\"path\": {\"pattern\": \"\"}}}", "pattern must be a non-empty string" },
	{ "{\"read_*\": {\"path\": {\"pattern\": 3}}}", "pattern must be a non-empty string" },
	{ "{\"read_*\": {\"path\": {\"pattern\": \"\\\\C\"}}}", "pattern" },
};

static void
test_bad(void)
{
	struct argrule_set *s;
	char err[512];
	json_t *j;
	size_t i;

	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		j = json_loads(bad_cases[i].json, 0, NULL);
		CHECK(j != NULL);
		err[0] = '\0';
		s = (struct argrule_set *)1;
		CHECK(argrule_set_parse(j, "role \"fs\"", &s, err, sizeof(err)) == -1);
		CHECK(s == NULL);
		if (strstr(err, bad_cases[i].needle) == NULL || strncmp(err, "role \"fs\": arguments", 20) != 0)
			fprintf(stderr, "bad case %zu: \"%s\" lacks \"%s\"\n", i, err,
			    bad_cases[i].needle);
		CHECK(strstr(err, bad_cases[i].needle) != NULL);
		CHECK(strncmp(err, "role \"fs\": arguments", 20) == 0);
		json_decref(j);
	}
	/* the message names owner, tool glob and argument */
	j = json_loads("{\"read_*\": {\"path\": {\"path_under\": \"srv\"}}}", 0, NULL);
	CHECK(argrule_set_parse(j, "agent \"bot\"", &s, err, sizeof(err)) == -1);
	CHECK_STR(err, "agent \"bot\": arguments: tool \"read_*\": argument \"path\": path_under: "
	    "\"srv\" is not an absolute directory (not an absolute path)");
	json_decref(j);
	/* empty object: nothing to check */
	j = json_object();
	s = (struct argrule_set *)1;
	CHECK(argrule_set_parse(j, "x", &s, err, sizeof(err)) == 0 && s == NULL);
	CHECK(argrule_set_count(NULL) == 0);
	json_decref(j);
}

/* Decisions. rules: the set's JSON; args: params.arguments (NULL: absent). */
struct call_case {
	const char *rules;
	const char *tool;
	const char *args;
	int allow;
	const char *detail;   /* expected detail on deny (exact) */
};

#define FS "{\"read_file\": {\"path\": {\"path_under\": \"/srv/data\"}}, " \
	"\"read_multiple_files\": {\"paths\": {\"path_under\": \"/srv/data\"}}}"
#define PU "path_under /srv/data: arguments.path: "

static const struct call_case call_cases[] = {
	/* path_under: inside */
	{ FS, "read_file", "{\"path\": \"/srv/data\"}", 1, NULL },
	{ FS, "read_file", "{\"path\": \"/srv/data/\"}", 1, NULL },
	{ FS, "read_file", "{\"path\": \"/srv/data/a.txt\"}", 1, NULL },
	{ FS, "read_file", "{\"path\": \"/srv/data/sub/../a.txt\"}", 1, NULL },
	{ FS, "read_file", "{\"path\": \"//srv//data//a.txt\"}", 1, NULL },
	{ FS, "read_file", "{\"path\": \"/srv/data/./a.txt\"}", 1, NULL },
	{ FS, "read_file", "{\"path\": \"/srv/data/naïve.txt\"}", 1, NULL },
	{ FS, "read_file", "{\"path\": \"/../srv/data/a\"}", 1, NULL },
	/* path_under: escapes */
	{ FS, "read_file", "{\"path\": \"/srv/data/../etc/passwd\"}", 0, PU "resolves outside the directory" },
	{ FS, "read_file", "{\"path\": \"/srv/data/./../x\"}", 0, PU "resolves outside the directory" },
	{ FS, "read_file", "{\"path\": \"/srv/data/..\"}", 0, PU "resolves outside the directory" },
	{ FS, "read_file", "{\"path\": \"/srv/data/a/../../b\"}", 0, PU "resolves outside the directory" },
	{ FS, "read_file", "{\"path\": \"/srv/data2/x\"}", 0, PU "resolves outside the directory" },
	{ FS, "read_file", "{\"path\": \"/srv/dat\"}", 0, PU "resolves outside the directory" },
	{ FS, "read_file", "{\"path\": \"/etc/passwd\"}", 0, PU "resolves outside the directory" },
	{ FS, "read_file", "{\"path\": \"/\"}", 0, PU "resolves outside the directory" },
	{ FS, "read_file", "{\"path\": \"../../../etc/passwd\"}", 0, PU "not an absolute path" },
	{ FS, "read_file", "{\"path\": \"a.txt\"}", 0, PU "not an absolute path" },
	{ FS, "read_file", "{\"path\": \"file:///srv/data/a\"}", 0, PU "not an absolute path" },
	{ FS, "read_file", "{\"path\": \"~/.ssh/id_rsa\"}", 0, PU "not an absolute path" },
	{ FS, "read_file", "{\"path\": \"/srv/data/%2e%2e/etc\"}", 0, PU "contains '%' (percent-encoding is refused)" },
	{ FS, "read_file", "{\"path\": \"/srv/data/..%2fetc\"}", 0, PU "contains '%' (percent-encoding is refused)" },
	{ FS, "read_file", "{\"path\": \"/srv/data\\\\..\\\\..\\\\etc\"}", 0, PU "contains a backslash" },
	{ FS, "read_file", "{\"path\": \"/srv/data/\\u0000/../../etc\"}", 0, PU "contains NUL" },
	{ FS, "read_file", "{\"path\": \"/srv/data/\\r\"}", 0, PU "contains a control character" },
	{ FS, "read_file", "{\"path\": \"/srv/data/\\uff0e\\uff0e/x\"}", 0, PU "contains a character that may be read as a dot, slash or backslash" },
	{ FS, "read_file", "{\"path\": \"\"}", 0, PU "empty" },
	/* non-strings and missing */
	{ FS, "read_file", "{\"path\": 5}", 0, PU "not a string" },
	{ FS, "read_file", "{\"path\": null}", 0, PU "not a string" },
	{ FS, "read_file", "{\"path\": {\"p\": \"/srv/data\"}}", 0, PU "not a string" },
	{ FS, "read_file", "{\"path\": true}", 0, PU "not a string" },
	{ FS, "read_file", "{}", 0, PU "missing (not optional)" },
	{ FS, "read_file", NULL, 0, PU "missing (not optional)" },
	{ FS, "read_file", "{\"Path\": \"/etc/passwd\"}", 0, PU "missing (not optional)" },
	{ FS, "read_file", "[\"/srv/data\"]", 0, "arguments: not an object" },
	{ FS, "read_file", "\"/srv/data\"", 0, "arguments: not an object" },
	/* other tools are not concerned; globs are exact and case-sensitive */
	{ FS, "write_file", "{\"path\": \"/etc/passwd\"}", 1, NULL },
	{ FS, "Read_file", "{\"path\": \"/etc/passwd\"}", 1, NULL },
	{ FS, "list_allowed_directories", NULL, 1, NULL },
	/* arrays: every element */
	{ FS, "read_multiple_files", "{\"paths\": [\"/srv/data/a\", \"/srv/data/b\"]}", 1, NULL },
	{ FS, "read_multiple_files", "{\"paths\": []}", 1, NULL },
	{ FS, "read_multiple_files", "{\"paths\": [\"/srv/data/a\", \"/etc/passwd\"]}", 0,
	  "path_under /srv/data: arguments.paths[1]: resolves outside the directory" },
	{ FS, "read_multiple_files", "{\"paths\": [\"/srv/data/a\", [\"/srv/data/b\"]]}", 0,
	  "path_under /srv/data: arguments.paths[1]: nested arrays and objects are refused" },
	{ FS, "read_multiple_files", "{\"paths\": [1]}", 0,
	  "path_under /srv/data: arguments.paths[0]: not a string" },
	/* a read_* glob also covers read_multiple_files, which has no "path": refused
	 * (fail closed) until a rule for "paths" or "optional" says otherwise */
	{ "{\"read_*\": {\"path\": {\"path_under\": \"/srv/data\"}}}", "read_multiple_files",
	  "{\"paths\": [\"/etc/passwd\"]}", 0, PU "missing (not optional)" },
	{ "{\"read_*\": {\"path\": {\"path_under\": \"/srv/data\"}}}", "read_text_file",
	  "{\"path\": \"/srv/data/x\"}", 1, NULL },
	/* several directories */
	{ "{\"*\": {\"p\": {\"path_under\": [\"/srv/a\", \"/srv/b/\"]}}}", "t", "{\"p\": \"/srv/b/x\"}", 1, NULL },
	{ "{\"*\": {\"p\": {\"path_under\": [\"/srv/a\", \"/srv/b/\"]}}}", "t", "{\"p\": \"/srv/c\"}", 0,
	  "path_under /srv/a, /srv/b: arguments.p: resolves outside the directories" },
	{ "{\"*\": {\"p\": {\"path_under\": \"/\"}}}", "t", "{\"p\": \"/etc/passwd\"}", 1, NULL },
	{ "{\"*\": {\"p\": {\"path_under\": \"/\"}}}", "t", "{\"p\": \"etc\"}", 0,
	  "path_under /: arguments.p: not an absolute path" },
	/* optional */
	{ "{\"*\": {\"p\": {\"path_under\": \"/srv\", \"optional\": true}}}", "t", "{}", 1, NULL },
	{ "{\"*\": {\"p\": {\"path_under\": \"/srv\", \"optional\": true}}}", "t", NULL, 1, NULL },
	{ "{\"*\": {\"p\": {\"path_under\": \"/srv\", \"optional\": true}}}", "t", "{\"p\": \"/etc\"}", 0,
	  "path_under /srv: arguments.p: resolves outside the directory" },
	{ "{\"*\": {\"p\": {\"path_under\": \"/srv\", \"optional\": true}}}", "t", "{\"p\": null}", 0,
	  "path_under /srv: arguments.p: not a string" },
	/* glob */
	{ "{\"search\": {\"q\": {\"glob\": \"*.md\"}}}", "search", "{\"q\": \"README.md\"}", 1, NULL },
	{ "{\"search\": {\"q\": {\"glob\": \"*.md\"}}}", "search", "{\"q\": \"README.txt\"}", 0,
	  "glob *.md: arguments.q: does not match" },
	{ "{\"search\": {\"q\": {\"glob\": [\"*.md\", \"*.txt\"]}}}", "search", "{\"q\": \"a.txt\"}", 1, NULL },
	{ "{\"search\": {\"q\": {\"glob\": \"a*\"}}}", "search", "{\"q\": \"a\\u0000b\"}", 0,
	  "glob a*: arguments.q: contains NUL" },
	{ "{\"search\": {\"q\": {\"glob\": \"*\"}}}", "search", "{\"q\": 1}", 0,
	  "glob *: arguments.q: not a string" },
	/* enum */
	{ "{\"ls\": {\"sortBy\": {\"enum\": [\"name\", \"size\"]}}}", "ls", "{\"sortBy\": \"size\"}", 1, NULL },
	{ "{\"ls\": {\"sortBy\": {\"enum\": [\"name\", \"size\"]}}}", "ls", "{\"sortBy\": \"Size\"}", 0,
	  "enum: arguments.sortBy: not one of the 2 allowed values" },
	{ "{\"ls\": {\"sortBy\": {\"enum\": [\"name\", \"size\"]}}}", "ls", "{\"sortBy\": [\"name\", \"size\"]}", 1, NULL },
	{ "{\"ls\": {\"sortBy\": {\"enum\": [\"name\", \"size\"]}}}", "ls", "{\"sortBy\": {\"a\": 1}}", 0,
	  "enum: arguments.sortBy: not a string, number, boolean or null" },
	{ "{\"t\": {\"n\": {\"enum\": [1, 2.5, true, null]}}}", "t", "{\"n\": 1.0}", 1, NULL },
	{ "{\"t\": {\"n\": {\"enum\": [1, 2.5, true, null]}}}", "t", "{\"n\": 2.5}", 1, NULL },
	{ "{\"t\": {\"n\": {\"enum\": [1, 2.5, true, null]}}}", "t", "{\"n\": true}", 1, NULL },
	{ "{\"t\": {\"n\": {\"enum\": [1, 2.5, true, null]}}}", "t", "{\"n\": null}", 1, NULL },
	{ "{\"t\": {\"n\": {\"enum\": [1, 2.5, true, null]}}}", "t", "{\"n\": \"1\"}", 0,
	  "enum: arguments.n: not one of the 4 allowed values" },
	{ "{\"t\": {\"n\": {\"enum\": [1, 2.5, true, null]}}}", "t", "{\"n\": false}", 0,
	  "enum: arguments.n: not one of the 4 allowed values" },
	{ "{\"t\": {\"n\": {\"enum\": [1, 2.5, true, null]}}}", "t", "{\"n\": 2}", 0,
	  "enum: arguments.n: not one of the 4 allowed values" },
	{ "{\"t\": {\"n\": {\"enum\": [\"a\"]}}}", "t", "{\"n\": \"a\\u0000\"}", 0,
	  "enum: arguments.n: not one of the 1 allowed values" },
	/* max_length counts code points */
	{ "{\"t\": {\"s\": {\"max_length\": 3}}}", "t", "{\"s\": \"abc\"}", 1, NULL },
	{ "{\"t\": {\"s\": {\"max_length\": 3}}}", "t", "{\"s\": \"日本語\"}", 1, NULL },
	{ "{\"t\": {\"s\": {\"max_length\": 3}}}", "t", "{\"s\": \"😀😀😀\"}", 1, NULL },
	{ "{\"t\": {\"s\": {\"max_length\": 3}}}", "t", "{\"s\": \"abcd\"}", 0,
	  "max_length 3: arguments.s: 4 characters" },
	{ "{\"t\": {\"s\": {\"max_length\": 0}}}", "t", "{\"s\": \"\"}", 1, NULL },
	{ "{\"t\": {\"s\": {\"max_length\": 3}}}", "t", "{\"s\": [\"ab\", \"abcd\"]}", 0,
	  "max_length 3: arguments.s[1]: 4 characters" },
	/* pattern: anchored at both ends, UTF mode */
	{ "{\"t\": {\"s\": {\"pattern\": \"[a-z]+\"}}}", "t", "{\"s\": \"abc\"}", 1, NULL },
	{ "{\"t\": {\"s\": {\"pattern\": \"[a-z]+\"}}}", "t", "{\"s\": \"abc1\"}", 0,
	  "pattern [a-z]+: arguments.s: does not match" },
	{ "{\"t\": {\"s\": {\"pattern\": \"[a-z]+\"}}}", "t", "{\"s\": \"1abc\"}", 0,
	  "pattern [a-z]+: arguments.s: does not match" },
	{ "{\"t\": {\"s\": {\"pattern\": \"[a-z]+\"}}}", "t", "{\"s\": \"abc\\n\"}", 0,
	  "pattern [a-z]+: arguments.s: does not match" },
	{ "{\"t\": {\"s\": {\"pattern\": \"a|b\"}}}", "t", "{\"s\": \"ab\"}", 0,
	  "pattern a|b: arguments.s: does not match" },
	{ "{\"t\": {\"s\": {\"pattern\": \"..\"}}}", "t", "{\"s\": \"日本\"}", 1, NULL },
	{ "{\"t\": {\"s\": {\"pattern\": \"(a+)+$\"}}}", "t",
	  "{\"s\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"}", 0,
	  "pattern (a+)+$: arguments.s: too costly to match (PCRE2 limit reached)" },
	/* combined checks: all must pass */
	{ "{\"t\": {\"s\": {\"path_under\": \"/srv\", \"max_length\": 10}}}", "t", "{\"s\": \"/srv/a\"}", 1, NULL },
	{ "{\"t\": {\"s\": {\"path_under\": \"/srv\", \"max_length\": 10}}}", "t", "{\"s\": \"/srv/abcdefgh\"}", 0,
	  "max_length 10: arguments.s: 13 characters" },
	{ "{\"t\": {\"s\": {\"path_under\": \"/srv\", \"glob\": \"*.txt\"}}}", "t", "{\"s\": \"/srv/a.md\"}", 0,
	  "glob *.txt: arguments.s: does not match" },
	/* several globs match: all apply */
	{ "{\"*\": {\"a\": {\"enum\": [1]}}, \"t*\": {\"b\": {\"enum\": [2]}}}", "tx", "{\"a\": 1, \"b\": 2}", 1, NULL },
	{ "{\"*\": {\"a\": {\"enum\": [1]}}, \"t*\": {\"b\": {\"enum\": [2]}}}", "tx", "{\"a\": 1, \"b\": 3}", 0,
	  "enum: arguments.b: not one of the 1 allowed values" },
	{ "{\"*\": {\"a\": {\"enum\": [1]}}, \"t*\": {\"b\": {\"enum\": [2]}}}", "ux", "{\"a\": 1, \"b\": 3}", 1, NULL },
};

static void
test_calls(void)
{
	struct argrule_result res;
	struct argrule_set *s;
	json_t *rules, *args;
	char err[512];
	size_t i;

	for (i = 0; i < sizeof(call_cases) / sizeof(call_cases[0]); i++) {
		const struct call_case *c = &call_cases[i];

		rules = json_loads(c->rules, 0, NULL);
		args = c->args ? json_loads(c->args, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
		CHECK(rules != NULL && (c->args == NULL || args != NULL));
		s = NULL;
		if (argrule_set_parse(rules, "role \"r\"", &s, err, sizeof(err)) != 0) {
			fprintf(stderr, "call case %zu: %s\n", i, err);
			CHECK(0);
			goto next;
		}
		CHECK(argrule_check(&s, 1, c->tool, args, &res) == 0);
		if (res.allow != c->allow || (!c->allow && strcmp(res.detail, c->detail) != 0))
			fprintf(stderr, "call case %zu (%s %s): allow %d detail \"%s\"\n", i,
			    c->tool, c->args ? c->args : "-", res.allow, res.detail);
		CHECK(res.allow == c->allow);
		if (!c->allow) {
			CHECK_STR(res.detail, c->detail);
			CHECK_STR(res.reason, "argument rule");
			CHECK_STR(res.owner, "role \"r\"");
			CHECK(res.rule != NULL && res.tool_glob != NULL);
		} else
			CHECK(res.reason == NULL);
next:
		argrule_set_free(s);
		json_decref(rules);
		json_decref(args);
	}
}

/* Several sets (agent + roles): deny wins, first failure in order; NULLs skipped. */
static void
test_sets(void)
{
	struct argrule_set *sets[3] = { NULL, NULL, NULL };
	struct argrule_result res;
	json_t *a, *b, *args;
	char err[256];

	a = json_loads("{\"read_*\": {\"path\": {\"path_under\": \"/srv\"}}}", 0, NULL);
	b = json_loads("{\"*\": {\"path\": {\"glob\": \"*.txt\", \"optional\": true}}}", 0, NULL);
	CHECK(argrule_set_parse(a, "agent \"bot\"", &sets[0], err, sizeof(err)) == 0);
	CHECK(argrule_set_parse(b, "role \"txt\"", &sets[2], err, sizeof(err)) == 0);
	CHECK(argrule_set_count(sets[0]) == 1);

	args = json_loads("{\"path\": \"/srv/a.txt\"}", 0, NULL);
	argrule_check(sets, 3, "read_file", args, &res);
	CHECK(res.allow == 1);
	json_decref(args);

	args = json_loads("{\"path\": \"/srv/a.md\"}", 0, NULL);
	argrule_check(sets, 3, "read_file", args, &res);
	CHECK(res.allow == 0);
	CHECK_STR(res.owner, "role \"txt\"");
	CHECK_STR(res.tool_glob, "*");
	CHECK_STR(res.rule, "glob");
	json_decref(args);

	args = json_loads("{\"path\": \"/etc/a.md\"}", 0, NULL);
	argrule_check(sets, 3, "read_file", args, &res);
	CHECK(res.allow == 0);
	CHECK_STR(res.owner, "agent \"bot\"");
	CHECK_STR(res.rule, "path_under");
	/* write_file: only the role's rule */
	argrule_check(sets, 3, "write_file", args, &res);
	CHECK(res.allow == 0 && strcmp(res.owner, "role \"txt\"") == 0);
	argrule_check(sets, 3, NULL, args, &res);
	CHECK(res.allow == 0);
	/* no sets: allow */
	argrule_check(NULL, 0, "read_file", args, &res);
	CHECK(res.allow == 1);
	argrule_check(sets + 1, 1, NULL, args, &res);
	CHECK(res.allow == 1);
	json_decref(args);

	argrule_set_free(sets[0]);
	argrule_set_free(sets[2]);
	json_decref(a);
	json_decref(b);
}

int
main(void)
{
	test_normalize();
	test_under();
	test_bad();
	test_calls();
	test_sets();
	CHECK_DONE();
}
