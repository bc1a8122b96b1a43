/* Fuzz target: the HTTP <-> stdio mapping driven by a script. The input is a JSON array
 * of steps: {"open": 1} opens a POST, {"post": K, "msg": M} sends M in the K-th opened
 * POST, {"close": K} closes it, {"server": M} routes M from the server, {"get": 1|0}
 * opens/closes the GET stream (draining the queue). Bounds must hold throughout. */
#include <stdint.h>
#include <stdlib.h>

#include "stdiomap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stdiomap *m;
	struct stdiomap_route r;
	enum stdiomap_kind k;
	uint64_t posts[16];
	size_t nposts = 0, i;
	json_t *root, *step, *v, *q;

	root = json_loadb((const char *)data, size, 0, NULL);
	if (!json_is_array(root) || (m = stdiomap_new(8, 4, 4096)) == NULL) {
		json_decref(root);
		return 0;
	}
	json_array_foreach(root, i, step) {
		if (json_object_get(step, "open") != NULL && nposts < 16)
			posts[nposts++] = stdiomap_post_open(m);
		if ((v = json_object_get(step, "post")) != NULL && nposts > 0)
			stdiomap_post_message(m, posts[(size_t)json_integer_value(v) % nposts],
			    json_object_get(step, "msg"), &k);
		if ((v = json_object_get(step, "close")) != NULL && nposts > 0)
			stdiomap_post_close(m, posts[(size_t)json_integer_value(v) % nposts]);
		if ((v = json_object_get(step, "server")) != NULL) {
			stdiomap_route(m, v, &r);
			if (r.dest == STDIOMAP_DROPPED && r.why == NULL)
				abort();
			if (r.dest == STDIOMAP_TO_POST && r.post == 0)
				abort();
		}
		if ((v = json_object_get(step, "get")) != NULL) {
			if (json_is_true(v)) {
				stdiomap_get_open(m);
				while ((q = stdiomap_queue_pop(m)) != NULL)
					json_decref(q);
			} else
				stdiomap_get_close(m);
		}
		if (stdiomap_pending(m) > 8)
			abort();
	}
	stdiomap_free(m);
	json_decref(root);
	return 0;
}
