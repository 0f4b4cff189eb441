// SPDX-License-Identifier: MIT
/* DSM messages come from other processes: decode anything, re-encode what is accepted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsm/dsm_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dsm_msg m, m2;
	uint8_t buf[DSM_MSG_HDR_LEN];
	const uint8_t *page, *page2;
	const char *why;

	if (dsm_msg_decode(data, size, &m, &page, &why)) {
		if (!why)
			abort();
		return 0;
	}
	if ((page != NULL) != dsm_msg_has_page(&m) || (page && page != data + DSM_MSG_HDR_LEN))
		abort();
	if (dsm_msg_encode(&m, buf, sizeof(buf)) != DSM_MSG_HDR_LEN)
		abort();
	/* what decodes must be exactly what encodes */
	if (memcmp(buf, data, DSM_MSG_HDR_LEN))
		abort();
	if (dsm_msg_decode(data, size, &m2, &page2, &why) || memcmp(&m, &m2, sizeof(m)))
		abort();
	return 0;
}
