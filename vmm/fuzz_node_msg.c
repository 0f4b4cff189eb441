// SPDX-License-Identifier: MIT
/* Node messages come from other processes: decode anything, re-encode what is accepted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/node_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct node_msg m, m2;
	uint8_t buf[NODE_MSG_MAX_BYTES];
	const char *why;
	uint16_t type;
	int n;

	if (size < 1)
		return 0;
	type = NODE_MSG_APIC + data[0] % (NODE_MSG_TYPE_END - NODE_MSG_APIC + 1);
	if (node_msg_decode(type, data + 1, size - 1, &m, &why))
		return 0;
	n = node_msg_encode(&m, buf, sizeof(buf));
	if (n < 0)
		abort();
	/* What decodes must survive a round trip unchanged. */
	if (node_msg_decode(type, buf, (size_t)n, &m2, &why) || memcmp(&m, &m2, sizeof(m)))
		abort();
	return 0;
}
