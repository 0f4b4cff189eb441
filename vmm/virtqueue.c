// SPDX-License-Identifier: MIT
/*
 * Split virtqueues, device side (virtio 1.2, 2.7). See virtqueue.h.
 *
 * Memory ordering with the driver (2.7.13, 2.7.7): the available index is
 * read with acquire semantics before the ring entries it covers; a used
 * element is written before the used index (release); and a full fence
 * separates our last store (used index, or re-enabling notifications) from
 * the load that decides whether to interrupt or to look again, the
 * store-load order x86 does not give for free.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vmm/virtqueue.h"

#define DESC_SIZE 16

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* A guest field read once: the barrier stops the compiler re-reading it. */
static inline void read_once(void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
	__asm__ __volatile__("" ::: "memory");
}

static inline uint16_t ld16(const uint8_t *p)
{
	return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED);
}

static inline void st16(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED);
}

static inline void st32(uint8_t *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)p, v, __ATOMIC_RELAXED);
}

__attribute__((format(printf, 2, 3)))
static int broken(struct virtq *vq, const char *fmt, ...)
{
	va_list ap;

	if (!vq->broken) {
		va_start(ap, fmt);
		vsnprintf(vq->why, sizeof(vq->why), fmt, ap);
		va_end(ap);
	}
	vq->broken = true;
	return -EINVAL;
}

/* Host pointer for guest range [gpa, gpa+len), or NULL (overflow included). */
static uint8_t *ram(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	if (!len || gpa + len < gpa)
		return NULL;
	return guest_mem_ptr(mem, gpa, len);
}

void virtq_reset(struct virtq *vq)
{
	memset(vq, 0, sizeof(*vq));
}

int virtq_enable(struct virtq *vq, const struct guest_mem *mem, uint16_t size,
		 uint64_t desc_gpa, uint64_t avail_gpa, uint64_t used_gpa, uint64_t features)
{
	virtq_reset(vq);
	vq->mem = mem;
	if (!size || (size & (size - 1)) || size > VIRTQ_MAX_SIZE)
		return broken(vq, "queue size %u is not a power of two up to %u", size,
			      VIRTQ_MAX_SIZE);
	if ((desc_gpa & 15) || (avail_gpa & 1) || (used_gpa & 3))
		return broken(vq, "misaligned ring (desc 0x%llx, avail 0x%llx, used 0x%llx)",
			      (unsigned long long)desc_gpa, (unsigned long long)avail_gpa,
			      (unsigned long long)used_gpa);
	vq->desc = ram(mem, desc_gpa, (uint64_t)DESC_SIZE * size);
	vq->avail = ram(mem, avail_gpa, 6 + 2ULL * size);
	vq->used = ram(mem, used_gpa, 6 + 8ULL * size);
	if (!vq->desc || !vq->avail || !vq->used)
		return broken(vq, "ring outside guest RAM (desc 0x%llx, avail 0x%llx, used 0x%llx)",
			      (unsigned long long)desc_gpa, (unsigned long long)avail_gpa,
			      (unsigned long long)used_gpa);
	vq->size = size;
	vq->event_idx = features & (1ULL << VIRTIO_F_EVENT_IDX);
	vq->indirect = features & (1ULL << VIRTIO_F_INDIRECT_DESC);
	/* Both indices start at 0 (2.7.6, 2.7.8): the driver zeroed its rings. */
	vq->used_idx = 0;
	vq->last_avail = 0;
	vq->notify_enabled = true;
	vq->ready = true;
	return 0;
}

static void read_desc(const uint8_t *table, unsigned i, struct desc *d)
{
	uint8_t raw[DESC_SIZE];

	read_once(raw, table + (size_t)i * DESC_SIZE, DESC_SIZE);
	memcpy(&d->addr, raw, 8);
	memcpy(&d->len, raw + 8, 4);
	memcpy(&d->flags, raw + 12, 2);
	memcpy(&d->next, raw + 14, 2);
}

static int add_seg(struct virtq *vq, struct virtq_chain *c, const struct desc *d)
{
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	struct virtq_seg *s;

	if (!writable && c->nr_in)
		return broken(vq, "chain %u: a readable buffer follows a writable one", c->head);
	/* An empty buffer carries nothing: accept and drop it. */
	if (!d->len)
		return 0;
	if (c->nr_out + c->nr_in == VIRTQ_MAX_SEGS)
		return broken(vq, "chain %u: more than %u buffers", c->head, VIRTQ_MAX_SEGS);
	s = &c->seg[c->nr_out + c->nr_in];
	s->host = ram(vq->mem, d->addr, d->len);
	if (!s->host)
		return broken(vq, "chain %u: buffer 0x%llx+%u is not in guest RAM", c->head,
			      (unsigned long long)d->addr, d->len);
	s->gpa = d->addr;
	s->len = d->len;
	if (writable) {
		c->nr_in++;
		c->in_bytes += d->len;
	} else {
		c->nr_out++;
		c->out_bytes += d->len;
	}
	return 0;
}

/*
 * Walks a chain from 'head'. A chain may go through the queue's table and
 * then, in its last descriptor, into one indirect table. Each table is
 * walked at most once per entry: more steps than entries is a loop.
 */
static int walk(struct virtq *vq, struct virtq_chain *c, uint16_t head)
{
	const uint8_t *table = vq->desc;
	unsigned n = vq->size, steps = 0, i = head;
	bool indirect = false;
	struct desc d;

	for (;;) {
		if (i >= n)
			return broken(vq, "chain %u: descriptor index %u out of range %u", head, i, n);
		if (++steps > n)
			return broken(vq, "chain %u: loops or is longer than its table (%u)", head, n);
		read_desc(table, i, &d);
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!vq->indirect)
				return broken(vq, "chain %u: indirect descriptor not negotiated", head);
			if (indirect)
				return broken(vq, "chain %u: indirect table inside an indirect table",
					      head);
			if (d.flags & VIRTQ_DESC_F_NEXT)
				return broken(vq, "chain %u: descriptor both INDIRECT and NEXT", head);
			if (!d.len || d.len % DESC_SIZE || d.len / DESC_SIZE > VIRTQ_MAX_SEGS)
				return broken(vq, "chain %u: indirect table of %u bytes", head, d.len);
			table = ram(vq->mem, d.addr, d.len);
			if (!table)
				return broken(vq, "chain %u: indirect table 0x%llx+%u is not in RAM",
					      head, (unsigned long long)d.addr, d.len);
			n = d.len / DESC_SIZE;
			i = 0;
			steps = 0;
			indirect = true;
			continue;
		}
		if (add_seg(vq, c, &d))
			return -EINVAL;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		i = d.next;
	}
}

bool virtq_has_avail(const struct virtq *vq)
{
	return vq->ready && !vq->broken &&
	       __atomic_load_n((const uint16_t *)(vq->avail + 2), __ATOMIC_ACQUIRE) !=
	       vq->last_avail;
}

int virtq_pop(struct virtq *vq, struct virtq_chain *c)
{
	uint16_t avail_idx, head;

	if (!vq->ready || vq->broken)
		return vq->broken ? -EINVAL : 0;
	avail_idx = __atomic_load_n((const uint16_t *)(vq->avail + 2), __ATOMIC_ACQUIRE);
	if (avail_idx == vq->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - vq->last_avail) > vq->size)
		return broken(vq, "available index moved by %u in a ring of %u",
			      (uint16_t)(avail_idx - vq->last_avail), vq->size);
	head = ld16(vq->avail + 4 + 2 * (vq->last_avail & (vq->size - 1)));
	c->head = head;
	c->nr_out = c->nr_in = 0;
	c->out_bytes = c->in_bytes = 0;
	if (walk(vq, c, head))
		return -EINVAL;
	vq->last_avail++;
	vq->popped++;
	/* With EVENT_IDX, "kick me once you pass this". */
	if (vq->event_idx && vq->notify_enabled)
		st16(vq->used + 4 + 8 * vq->size, vq->last_avail);
	return 1;
}

void virtq_push(struct virtq *vq, uint16_t head, uint32_t written)
{
	uint8_t *e;

	if (!vq->ready)
		return;
	e = vq->used + 4 + 8 * (vq->used_idx & (vq->size - 1));
	st32(e, head);
	st32(e + 4, written);
	vq->used_idx++;
	__atomic_store_n((uint16_t *)(vq->used + 2), vq->used_idx, __ATOMIC_RELEASE);
}

bool virtq_should_notify(struct virtq *vq)
{
	uint16_t old, new, event;
	bool valid;

	if (!vq->ready)
		return false;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(ld16(vq->avail) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	old = vq->signalled_used;
	valid = vq->signalled_valid;
	new = vq->used_idx;
	vq->signalled_used = new;
	vq->signalled_valid = true;
	if (!valid)
		return true;
	event = ld16(vq->avail + 4 + 2 * vq->size);
	/* Did the used index step over used_event since the last interrupt? (2.7.10) */
	return (uint16_t)(new - event - 1) < (uint16_t)(new - old);
}

void virtq_disable_notify(struct virtq *vq)
{
	if (!vq->ready)
		return;
	vq->notify_enabled = false;
	if (!vq->event_idx)
		st16(vq->used, VIRTQ_USED_F_NO_NOTIFY);
}

bool virtq_enable_notify(struct virtq *vq)
{
	if (!vq->ready || vq->broken)
		return false;
	vq->notify_enabled = true;
	if (vq->event_idx)
		st16(vq->used + 4 + 8 * vq->size, vq->last_avail);
	else
		st16(vq->used, 0);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n((const uint16_t *)(vq->avail + 2), __ATOMIC_ACQUIRE) !=
	       vq->last_avail;
}

static size_t chain_copy(const struct virtq_seg *seg, unsigned nr, uint64_t off, void *buf,
			 const void *src, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < nr && done < len; i++) {
		size_t n;

		if (off >= seg[i].len) {
			off -= seg[i].len;
			continue;
		}
		n = seg[i].len - off;
		if (n > len - done)
			n = len - done;
		if (buf)
			memcpy((uint8_t *)buf + done, seg[i].host + off, n);
		else
			memcpy(seg[i].host + off, (const uint8_t *)src + done, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *buf, size_t len)
{
	return chain_copy(c->seg, c->nr_out, off, buf, NULL, len);
}

size_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *buf, size_t len)
{
	return chain_copy(c->seg + c->nr_out, c->nr_in, off, NULL, buf, len);
}

uint8_t *virtq_chain_in_byte(const struct virtq_chain *c, uint64_t off)
{
	const struct virtq_seg *seg = c->seg + c->nr_out;

	for (unsigned i = 0; i < c->nr_in; i++) {
		if (off < seg[i].len)
			return seg[i].host + off;
		off -= seg[i].len;
	}
	return NULL;
}
