// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <sys/uio.h>

#include "dsm/dsm_fabric.h"
#include "fabric/fabric.h"

static int fabric_dsm_send(void *ctx, unsigned dst, const struct dsm_msg *msg, const void *page)
{
	uint8_t hdr[DSM_MSG_HDR_LEN];
	struct iovec iov[2];
	int n = dsm_msg_encode(msg, hdr, sizeof(hdr));

	if (n < 0)
		return n;
	/* The page goes from where it is: the fabric seals the pieces without a copy. */
	iov[0] = (struct iovec){ hdr, (size_t)n };
	iov[1] = (struct iovec){ (void *)page, page ? DSM_PAGE_SIZE : 0 };
	return fabric_sendv(ctx, dst, DSM_FABRIC_TYPE, 0, iov, page ? 2 : 1);
}

struct dsm_transport_ops dsm_fabric_ops(struct fabric *f)
{
	return (struct dsm_transport_ops){ .send = fabric_dsm_send, .ctx = f };
}

int dsm_fabric_receive(struct dsm_node *n, unsigned src, const void *payload, size_t len)
{
	const uint8_t *page = NULL;
	struct dsm_msg msg;
	const char *why;

	/* A peer that breaks the protocol cannot be trusted with guest memory. */
	if (dsm_msg_decode(payload, len, &msg, &page, &why)) {
		char line[160];

		snprintf(line, sizeof(line), "malformed DSM message from node %u: %s", src, why);
		dsm_node_fail(n, line);
		return -EINVAL;
	}
	return dsm_receive(n, src, &msg, page);
}
