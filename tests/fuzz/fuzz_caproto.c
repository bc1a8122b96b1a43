/* Fuzz target: the CA service protocol decoders (both sides). Invariant: a body that
 * decodes re-encodes to a frame that decodes to the same thing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "caproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct caproto_req a, b;
	struct caproto_reply x, y;
	char err[256];
	struct buf f;
	size_t i;

	buf_init(&f);
	if (caproto_req_decode((const char *)data, size, &a, err, sizeof(err)) == 0) {
		if (caproto_req_encode(&a, &f, err, sizeof(err)) == -1 ||
		    caproto_frame_len((const unsigned char *)f.p) != f.len - 4 ||
		    caproto_req_decode(f.p + 4, f.len - 4, &b, err, sizeof(err)) == -1)
			abort();
		if (a.op != b.op || strcmp(a.token, b.token) || strcmp(a.agent, b.agent) ||
		    a.spki_len != b.spki_len || a.cert_len != b.cert_len || a.nids != b.nids ||
		    a.nonce_len != b.nonce_len ||
		    (a.spki_len && memcmp(a.spki, b.spki, a.spki_len)))
			abort();
		for (i = 0; i < a.nids; i++)
			if (a.ids[i].md_nid != b.ids[i].md_nid || strcmp(a.ids[i].serial, b.ids[i].serial))
				abort();
		caproto_req_clear(&a);
		caproto_req_clear(&b);
	} else if (memchr(err, '\0', sizeof(err)) == NULL)
		abort();
	buf_reset(&f);
	if (caproto_reply_decode((const char *)data, size, &x, err, sizeof(err)) == 0) {
		if (caproto_reply_encode(&x, &f) == 0) {
			if (caproto_reply_decode(f.p + 4, f.len - 4, &y, err, sizeof(err)) == -1 ||
			    y.err != x.err || y.cert_len != x.cert_len || y.ocsp_len != x.ocsp_len ||
			    y.nchain != x.nchain)
				abort();
			caproto_reply_clear(&y);
		}
		caproto_reply_clear(&x);
	}
	buf_free(&f);
	return 0;
}
