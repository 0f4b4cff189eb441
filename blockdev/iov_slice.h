/* SPDX-License-Identifier: MIT */
/*
 * A request's buffers measured and cut at a boundary (a chunk, a lease
 * region): the stores, the volume and the serving node's lease reader all
 * split one guest request into pieces that go to different places.
 */
#ifndef GRAPPE_BLOCKDEV_IOV_SLICE_H
#define GRAPPE_BLOCKDEV_IOV_SLICE_H

#include <stdint.h>
#include <sys/uio.h>

/* Bytes in the buffers. */
static inline uint64_t iov_total(const struct iovec *iov, int iovcnt)
{
	uint64_t n = 0;

	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

/* The iovecs covering [skip, skip + len) of iov into out; returns their count. */
static inline int iov_slice(const struct iovec *iov, int iovcnt, uint64_t skip, uint64_t len,
			    struct iovec *out)
{
	int n = 0;

	for (int i = 0; i < iovcnt && len > 0; i++) {
		uint64_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		out[n].iov_base = (uint8_t *)iov[i].iov_base + skip;
		out[n].iov_len = (size_t)(l - skip < len ? l - skip : len);
		len -= out[n].iov_len;
		skip = 0;
		n++;
	}
	return n;
}

#endif
