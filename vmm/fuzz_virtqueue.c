// SPDX-License-Identifier: MIT
/*
 * The descriptor-chain walker reads guest-controlled memory: the input is
 * the first bytes of guest RAM (descriptor table at 0, available ring at
 * 0x1000, used ring at 0x2000, buffers anywhere), byte 0 picks the queue
 * size and features. Whatever the guest wrote, popping must either give
 * chains whose buffers all lie in guest RAM or break the queue, and never
 * read or write outside RAM.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/virtqueue.h"

#define MEM_SIZE (1u << 20)
#define DESC_GPA 0x0
#define AVAIL_GPA 0x1000
#define USED_GPA 0x2000
#define MAX_POPS 64

static struct guest_mem mem;
static struct virtq_chain chain;

static void check_chain(const struct virtq_chain *c)
{
	uint64_t out = 0, in = 0;
	uint8_t buf[64];

	if (c->nr_out + c->nr_in > VIRTQ_MAX_SEGS)
		abort();
	for (unsigned i = 0; i < c->nr_out + c->nr_in; i++) {
		const struct virtq_seg *s = &c->seg[i];

		if (!s->len || s->host < mem.host || s->host + s->len > mem.host + mem.size ||
		    s->host != mem.host + s->gpa)
			abort();
		*(i < c->nr_out ? &out : &in) += s->len;
	}
	if (out != c->out_bytes || in != c->in_bytes)
		abort();
	/* What a device does with a chain: read a header, write a status. */
	virtq_chain_read(c, 0, buf, sizeof(buf));
	if (c->out_bytes > 8)
		virtq_chain_read(c, c->out_bytes - 8, buf, 16);
	if (c->in_bytes)
		virtq_chain_write(c, c->in_bytes - 1, buf, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct virtq vq;
	uint64_t features = 0;
	uint16_t qsize;

	if (!mem.host && guest_mem_init(&mem, MEM_SIZE))
		abort();
	if (size < 1)
		return 0;
	memset(mem.host, 0, MEM_SIZE);
	qsize = (uint16_t)(1u << (data[0] & 7));          /* 1..128: fits below 0x1000 */
	if (data[0] & 0x08)
		features |= 1ULL << VIRTIO_F_INDIRECT_DESC;
	if (data[0] & 0x10)
		features |= 1ULL << VIRTIO_F_EVENT_IDX;
	memcpy(mem.host, data + 1, size - 1 < MEM_SIZE ? size - 1 : MEM_SIZE);
	if (virtq_enable(&vq, &mem, qsize, DESC_GPA, AVAIL_GPA, USED_GPA, features))
		abort();
	if (data[0] & 0x20)
		virtq_disable_notify(&vq);
	for (int i = 0; i < MAX_POPS; i++) {
		int rc = virtq_pop(&vq, &chain);

		if (rc < 0) {
			if (!vq.broken || !vq.why[0])
				abort();
			break;
		}
		if (rc == 0) {
			if (!virtq_enable_notify(&vq))
				break;
			continue;
		}
		check_chain(&chain);
		virtq_push(&vq, chain.head, (uint32_t)chain.in_bytes);
		virtq_should_notify(&vq);
	}
	return 0;
}
