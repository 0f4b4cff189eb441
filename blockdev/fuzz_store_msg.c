// SPDX-License-Identifier: MIT
/*
 * Remote store messages come from other processes: decode anything (the
 * first byte picks the request type, or a reply), and re-encode what is
 * accepted, which must decode again to the same message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/store_msg.h"

#define MAX_MSG (STORE_MSG_REQ_HDR_LEN + STORE_MSG_MAX_DATA)

static void check_req(uint16_t type, const uint8_t *data, size_t size)
{
	static uint8_t buf[MAX_MSG];
	struct store_req a, b;
	const char *why;
	size_t len;

	if (store_msg_decode_req(type, data, size, &a, &why))
		return;
	if (store_msg_encode_req(type, &a, buf, &why) != STORE_MSG_REQ_HDR_LEN)
		abort();
	len = STORE_MSG_REQ_HDR_LEN;
	if (a.body) {
		memcpy(buf + len, a.body, a.len);
		len += a.len;
	}
	if (len != size || memcmp(buf, data, size))
		abort();   /* one encoding per message: nothing unchecked slips through */
	if (store_msg_decode_req(type, buf, len, &b, &why))
		abort();
	if (a.flags != b.flags || a.handle != b.handle || a.off != b.off || a.len != b.len ||
	    !a.body != !b.body)
		abort();
}

static void check_reply(const uint8_t *data, size_t size)
{
	static uint8_t buf[STORE_MSG_REPLY_MAX_HDR + STORE_MSG_MAX_DATA];
	struct store_reply a, b;
	const char *why;
	int n;

	if (store_msg_decode_reply(data, size, &a, &why))
		return;
	n = store_msg_encode_reply(&a, buf, sizeof(buf), &why);
	if (n < 0)
		abort();
	if (a.data_len)
		memcpy(buf + n, a.data, a.data_len);
	if ((size_t)n + a.data_len != size || memcmp(buf, data, size))
		abort();
	if (store_msg_decode_reply(buf, size, &b, &why))
		abort();
	a.data = b.data = NULL;
	if (memcmp(&a, &b, sizeof(a)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned pick;

	if (size < 1)
		return 0;
	pick = data[0] % (STORE_MSG_REQ_END - STORE_MSG_OPEN + 1);
	if (pick < STORE_MSG_REQ_END - STORE_MSG_OPEN)
		check_req((uint16_t)(STORE_MSG_OPEN + pick), data + 1, size - 1);
	else
		check_reply(data + 1, size - 1);
	return 0;
}
