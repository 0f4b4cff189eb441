// SPDX-License-Identifier: MIT
/*
 * Read-lease messages come from other processes: decode anything (the
 * first byte picks the type), and re-encode what is accepted, which must
 * give back the input byte for byte and decode to the same message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blockdev/lease_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t buf[LEASE_MSG_LEN];
	struct lease_msg a, b;
	const char *why;
	uint16_t type;

	if (size < 1)
		return 0;
	/* Two types past the end: the decoder must refuse types it does not own. */
	type = (uint16_t)(LEASE_MSG_REQUEST + data[0] % (LEASE_MSG_END - LEASE_MSG_REQUEST + 2));
	if (lease_msg_decode(type, data + 1, size - 1, &a, &why))
		return 0;
	if (!lease_msg_owns_type(type) || lease_msg_encode(&a, buf, &why))
		abort();
	if (size - 1 != LEASE_MSG_LEN || memcmp(buf, data + 1, LEASE_MSG_LEN))
		abort();
	if (lease_msg_decode(type, buf, sizeof(buf), &b, &why) || a.type != b.type ||
	    a.status != b.status || a.volume != b.volume || a.store != b.store ||
	    a.region != b.region || a.seq != b.seq)
		abort();
	return 0;
}
