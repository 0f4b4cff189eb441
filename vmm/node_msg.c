// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "vmm/node_msg.h"

struct wr { uint8_t *p; size_t cap, len; bool over; };
struct rd { const uint8_t *p; size_t len, off; bool short_read; };

static void put(struct wr *w, uint64_t v, unsigned bytes)
{
	if (w->len + bytes > w->cap) {
		w->over = true;
		return;
	}
	for (unsigned i = 0; i < bytes; i++)
		w->p[w->len++] = (uint8_t)(v >> (8 * i));
}

static uint64_t get(struct rd *r, unsigned bytes)
{
	uint64_t v = 0;

	if (r->off + bytes > r->len) {
		r->short_read = true;
		return 0;
	}
	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)r->p[r->off++] << (8 * i);
	return v;
}

static void put_apic(struct wr *w, const struct apic_msg *a)
{
	put(w, a->vector, 1);
	put(w, a->delivery, 1);
	put(w, a->dest_logical, 1);
	put(w, a->level, 1);
	put(w, a->trigger_level, 1);
	put(w, a->shorthand, 1);
	put(w, a->dest, 1);
	put(w, a->source, 2);
}

static void get_apic(struct rd *r, struct apic_msg *a)
{
	a->vector = (uint8_t)get(r, 1);
	a->delivery = (uint8_t)get(r, 1);
	a->dest_logical = (uint8_t)get(r, 1);
	a->level = (uint8_t)get(r, 1);
	a->trigger_level = (uint8_t)get(r, 1);
	a->shorthand = (uint8_t)get(r, 1);
	a->dest = (uint8_t)get(r, 1);
	a->source = (uint16_t)get(r, 2);
}

static void put_io(struct wr *w, const struct io_req *io)
{
	put(w, io->space, 1);
	put(w, io->is_write, 1);
	put(w, io->len, 1);
	put(w, io->vcpu, 2);
	put(w, io->addr, 8);
	put(w, io->data, 8);
}

static void get_io(struct rd *r, struct io_req *io)
{
	io->space = (uint8_t)get(r, 1);
	io->is_write = (uint8_t)get(r, 1);
	io->len = (uint8_t)get(r, 1);
	io->vcpu = (uint16_t)get(r, 2);
	io->addr = get(r, 8);
	io->data = get(r, 8);
}

/* The fields each VQ message carries (see struct node_msg_vq). */
static bool vq_has_queue(uint16_t type)
{
	return type != NODE_MSG_VQ_RESET && type != NODE_MSG_VQ_RESET_DONE;
}

static void put_vq(struct wr *w, uint16_t type, const struct node_msg_vq *v)
{
	put(w, v->disk, 1);
	if (vq_has_queue(type))
		put(w, v->queue, 2);
	else
		put(w, v->seq, 4);
	if (type == NODE_MSG_VQ_START) {
		put(w, v->size, 2);
		put(w, v->vector, 2);
		put(w, v->features, 8);
		put(w, v->notify_gpa, 8);
		put(w, v->desc, 8);
		put(w, v->driver, 8);
		put(w, v->device, 8);
	}
	if (type == NODE_MSG_VQ_START || type == NODE_MSG_VQ_MSIX) {
		put(w, v->msix_addr, 8);
		put(w, v->msix_data, 4);
		put(w, v->msix_flags, 1);
	}
}

static const char *get_vq(struct rd *r, uint16_t type, struct node_msg_vq *v)
{
	v->disk = (uint8_t)get(r, 1);
	if (vq_has_queue(type))
		v->queue = (uint16_t)get(r, 2);
	else
		v->seq = (uint32_t)get(r, 4);
	if (type == NODE_MSG_VQ_START) {
		v->size = (uint16_t)get(r, 2);
		v->vector = (uint16_t)get(r, 2);
		v->features = get(r, 8);
		v->notify_gpa = get(r, 8);
		v->desc = get(r, 8);
		v->driver = get(r, 8);
		v->device = get(r, 8);
	}
	if (type == NODE_MSG_VQ_START || type == NODE_MSG_VQ_MSIX) {
		v->msix_addr = get(r, 8);
		v->msix_data = (uint32_t)get(r, 4);
		v->msix_flags = (uint8_t)get(r, 1);
	}
	if (r->short_read)
		return NULL;
	if (v->disk >= NODE_MSG_VQ_MAX_DISKS)
		return "disk out of range";
	if (vq_has_queue(type) && v->queue >= NODE_MSG_VQ_MAX_QUEUES)
		return "queue out of range";
	if (type == NODE_MSG_VQ_START) {
		if (!v->size || v->size > 32768 || (v->size & (v->size - 1)))
			return "queue size not a power of two up to 32768";
		if (v->vector != NODE_MSG_VQ_NO_VECTOR && v->vector > NODE_MSG_VQ_MSIX_MAX_VECTOR)
			return "MSI-X vector out of range";
		if (!(v->features & (1ULL << 32)))
			return "features without VERSION_1";
		/* virtio 1.2, 2.7: the parts' alignments; notify registers are 4-byte aligned. */
		if ((v->desc & 15) || (v->driver & 1) || (v->device & 3) || (v->notify_gpa & 3))
			return "misaligned ring or notify address";
	}
	if (type == NODE_MSG_VQ_START || type == NODE_MSG_VQ_MSIX) {
		if (v->msix_flags & ~NODE_MSG_VQ_MSIX_DIRECT)
			return "reserved MSI-X flags";
		/* A message the server sends itself must be an MSI (0xFEExxxxx). */
		if ((v->msix_flags & NODE_MSG_VQ_MSIX_DIRECT) && (v->msix_addr >> 20) != 0xfee)
			return "MSI address outside 0xFEE00000";
	}
	return NULL;
}

int node_msg_encode(const struct node_msg *m, uint8_t *buf, size_t cap)
{
	struct wr w = { .p = buf, .cap = cap };
	size_t tl;

	switch (m->type) {
	case NODE_MSG_APIC:
		put(&w, m->u.apic.vcpu, 2);
		put_apic(&w, &m->u.apic.msg);
		break;
	case NODE_MSG_APIC_ID:
		put(&w, m->u.apic_id.vcpu, 2);
		put(&w, m->u.apic_id.apic_id, 1);
		put(&w, m->u.apic_id.ldr, 4);
		put(&w, m->u.apic_id.dfr, 4);
		break;
	case NODE_MSG_EOI:
		put(&w, m->u.eoi.vector, 1);
		break;
	case NODE_MSG_IO_REQ:
	case NODE_MSG_IO_RESP:
		put_io(&w, &m->u.io);
		break;
	case NODE_MSG_EVENT:
		tl = strnlen(m->u.event.text, NODE_MSG_TEXT_MAX);
		put(&w, m->u.event.event, 1);
		put(&w, tl, 1);
		for (size_t i = 0; i < tl; i++)
			put(&w, (uint8_t)m->u.event.text[i], 1);
		break;
	case NODE_MSG_CLOCK:
		put(&w, m->u.clock.clock_ns, 8);
		put(&w, m->u.clock.realtime_ns, 8);
		break;
	case NODE_MSG_READY:
		put(&w, m->u.ready.node, 2);
		break;
	case NODE_MSG_VQ_START:
	case NODE_MSG_VQ_MSIX:
	case NODE_MSG_VQ_KICK:
	case NODE_MSG_VQ_RESET:
	case NODE_MSG_VQ_RESET_DONE:
	case NODE_MSG_VQ_IRQ:
	case NODE_MSG_VQ_FAIL:
		put_vq(&w, m->type, &m->u.vq);
		break;
	default:
		return -EINVAL;
	}
	return w.over ? -EINVAL : (int)w.len;
}

static const char *check_apic(const struct apic_msg *a)
{
	if (a->delivery == 3 || a->delivery > APIC_DM_EXTINT)
		return "reserved delivery mode";
	if (a->dest_logical > 1 || a->level > 1 || a->trigger_level > 1)
		return "flag out of range";
	if (a->shorthand > APIC_SH_ALL_EXCL)
		return "bad shorthand";
	return NULL;
}

static const char *check_io(const struct io_req *io)
{
	if (io->space > IO_SPACE_MMIO || io->is_write > 1)
		return "bad I/O space or direction";
	if (io->len != 1 && io->len != 2 && io->len != 4 && io->len != 8)
		return "bad I/O access size";
	if (io->space == IO_SPACE_PIO && (io->addr > 0xffff || io->len > 4))
		return "bad port access";
	return NULL;
}

static const char *decode_body(uint16_t type, struct rd *r, struct node_msg *m)
{
	switch (type) {
	case NODE_MSG_APIC:
		m->u.apic.vcpu = (uint16_t)get(r, 2);
		get_apic(r, &m->u.apic.msg);
		return r->short_read ? NULL : check_apic(&m->u.apic.msg);
	case NODE_MSG_APIC_ID:
		m->u.apic_id.vcpu = (uint16_t)get(r, 2);
		m->u.apic_id.apic_id = (uint8_t)get(r, 1);
		m->u.apic_id.ldr = (uint32_t)get(r, 4);
		m->u.apic_id.dfr = (uint32_t)get(r, 4);
		return NULL;
	case NODE_MSG_EOI:
		m->u.eoi.vector = (uint8_t)get(r, 1);
		return NULL;
	case NODE_MSG_IO_REQ:
	case NODE_MSG_IO_RESP:
		get_io(r, &m->u.io);
		return r->short_read ? NULL : check_io(&m->u.io);
	case NODE_MSG_EVENT: {
		size_t tl;

		m->u.event.event = (uint8_t)get(r, 1);
		tl = (size_t)get(r, 1);
		if (tl > NODE_MSG_TEXT_MAX)
			return "event text too long";
		for (size_t i = 0; i < tl && !r->short_read; i++) {
			char c = (char)get(r, 1);

			m->u.event.text[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
		}
		m->u.event.text[tl] = '\0';
		return NULL;
	}
	case NODE_MSG_CLOCK:
		m->u.clock.clock_ns = get(r, 8);
		m->u.clock.realtime_ns = get(r, 8);
		return NULL;
	case NODE_MSG_READY:
		m->u.ready.node = (uint16_t)get(r, 2);
		return NULL;
	case NODE_MSG_VQ_START:
	case NODE_MSG_VQ_MSIX:
	case NODE_MSG_VQ_KICK:
	case NODE_MSG_VQ_RESET:
	case NODE_MSG_VQ_RESET_DONE:
	case NODE_MSG_VQ_IRQ:
	case NODE_MSG_VQ_FAIL:
		return get_vq(r, type, &m->u.vq);
	default:
		return "unknown message type";
	}
}

int node_msg_decode(uint16_t type, const uint8_t *buf, size_t len, struct node_msg *m,
		    const char **why)
{
	struct rd r = { .p = buf, .len = len };
	const char *bad;

	memset(m, 0, sizeof(*m));
	m->type = type;
	bad = decode_body(type, &r, m);
	if (!bad && r.short_read)
		bad = "truncated";
	if (!bad && r.off != len)
		bad = "trailing bytes";
	if (bad) {
		*why = bad;
		return -EINVAL;
	}
	return 0;
}
