// SPDX-License-Identifier: MIT
/*
 * virtio-blk requests (virtio 1.2, 5.2.6) on a blockdev. See virtio_blk.h.
 *
 * A request is a chain: a 16-byte header (type, reserved, sector) in the
 * readable part, data (readable for writes, writable for reads), and a
 * status byte, the last writable byte. virtio 1.x drivers may split or
 * merge these across buffers as they like (no framing assumption, 2.6.4),
 * so everything is located by byte offset, never by descriptor.
 *
 * Reads, writes and flushes go to the store asynchronously when it can
 * take them (blockdev_submit: a file or block device): each queue has an
 * io_uring (aio_ring) and one worker that owns it. The worker pops every
 * chain the guest made available, starts each on the ring, and sleeps in
 * aio_ring_wait(), which hands them all to the kernel in one system call;
 * a kick wakes it through the ring, and a request that completes there
 * writes its status and returns its chain (virtio_pci_complete). So every
 * request the guest queued is in flight in the kernel at once, with no
 * more thread switches per request than a synchronous worker. Other
 * requests, and every request on a store without asynchronous requests
 * (the replicated volume, a remote store), run synchronously on the queue's
 * workers.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "blockdev/aio_ring.h"
#include "vmm/virtio_blk.h"

#define SECTOR 512u
#define HDR_LEN 16u
#define SEG_LEN 16u           /* discard / write zeroes segment */
#define WZ_UNMAP 1u           /* its flags: the only defined bit */
#define MAX_LOGGED_ERRORS 8

#define STAT_ADD(b, f, v) __atomic_fetch_add(&(b)->stats.f, (v), __ATOMIC_RELAXED)

static void blog(struct virtio_blk *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void blog(struct virtio_blk *b, const char *fmt, ...)
{
	char msg[320];
	int n;
	va_list ap;

	if (!b->log)
		return;
	n = snprintf(msg, sizeof(msg), "virtio-blk %s: ", b->name);
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	b->log(b->log_ctx, msg);
}

static void io_error(struct virtio_blk *b, const char *what, uint64_t sector, int rc)
{
	uint64_t n = __atomic_fetch_add(&b->stats.errors, 1, __ATOMIC_RELAXED);

	if (n < MAX_LOGGED_ERRORS)
		blog(b, "%s at sector %llu failed: %s%s", what, (unsigned long long)sector,
		     strerror(-rc), n + 1 == MAX_LOGGED_ERRORS ? " (further errors not logged)" : "");
}

/* The iovecs of bytes [off, off+len) of a run of segments. */
static int seg_iov(const struct virtq_seg *seg, unsigned nr, uint64_t off, uint64_t len,
		   struct iovec *iov)
{
	int n = 0;

	for (unsigned i = 0; i < nr && len > 0; i++) {
		uint64_t l;

		if (off >= seg[i].len) {
			off -= seg[i].len;
			continue;
		}
		l = seg[i].len - off;
		if (l > len)
			l = len;
		iov[n].iov_base = seg[i].host + off;
		iov[n].iov_len = l;
		n++;
		len -= l;
		off = 0;
	}
	return n;
}

static bool in_range(struct virtio_blk *b, uint64_t sector, uint64_t nsect)
{
	return sector <= b->capacity && nsect <= b->capacity - sector;
}

/*
 * Requests start on a logical block: with <blockio> 4096 a guest never
 * sends less (Linux does not), and a store opened O_DIRECT on a device of
 * 4 KiB sectors could not take it.
 */
static bool aligned(const struct virtio_blk *b, uint64_t sector)
{
	return sector % (b->lbs / SECTOR) == 0;
}

/* A request answered IOERR before it reached the store (out of range, misaligned, read-only). */
static uint8_t refuse(struct virtio_blk *b)
{
	STAT_ADD(b, refused, 1);
	return VIRTIO_BLK_S_IOERR;
}

/* The data of a read or write request: its length, or an error status. */
static uint8_t rw_len(struct virtio_blk *b, const struct virtq_chain *c, bool is_write,
		      uint64_t sector, uint64_t *len)
{
	*len = is_write ? c->out_bytes - HDR_LEN : c->in_bytes - 1;
	if (is_write && b->bd->read_only)
		return refuse(b);
	if (*len % b->lbs || !aligned(b, sector) || !in_range(b, sector, *len / SECTOR))
		return refuse(b);
	return VIRTIO_BLK_S_OK;
}

static int rw_iov(const struct virtq_chain *c, bool is_write, uint64_t len, struct iovec *iov)
{
	if (is_write)
		return seg_iov(c->seg, c->nr_out, HDR_LEN, len, iov);
	return seg_iov(c->seg + c->nr_out, c->nr_in, 0, len, iov);
}

/* A request that went well: counted, and the bytes it wrote into the chain. */
static uint64_t account(struct virtio_blk *b, uint32_t type, uint64_t len)
{
	switch (type) {
	case VIRTIO_BLK_T_OUT:
		STAT_ADD(b, writes, 1);
		STAT_ADD(b, bytes_written, len);
		return 0;
	case VIRTIO_BLK_T_IN:
		STAT_ADD(b, reads, 1);
		STAT_ADD(b, bytes_read, len);
		return len;
	default:
		return 0;
	}
}

static const char *type_name(uint32_t type)
{
	return type == VIRTIO_BLK_T_OUT ? "write" : type == VIRTIO_BLK_T_IN ? "read" : "flush";
}

static uint8_t do_rw(struct virtio_blk *b, const struct virtq_chain *c, bool is_write,
		     uint64_t sector, uint64_t len, uint64_t *written)
{
	struct iovec iov[VIRTQ_MAX_SEGS];
	int n, rc;

	if (!len)
		return VIRTIO_BLK_S_OK;
	n = rw_iov(c, is_write, len, iov);
	rc = is_write ? blockdev_write(b->bd, iov, n, sector * SECTOR)
		      : blockdev_read(b->bd, iov, n, sector * SECTOR);
	if (rc) {
		io_error(b, type_name(is_write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN), sector, rc);
		return VIRTIO_BLK_S_IOERR;
	}
	*written = account(b, is_write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, len);
	return VIRTIO_BLK_S_OK;
}

/* ---- asynchronous requests ---- */

struct blk_req {
	struct blockdev_req br;      /* first: done() gets it back */
	struct virtio_blk *b;
	unsigned queue;
	uint16_t head;
	uint32_t type;
	uint8_t *status;             /* the chain's last writable byte, in guest RAM */
	uint64_t sector, len;
	struct iovec iov[];
};

/* On the store's completion thread. */
static void blk_req_done(struct blockdev_req *br, int rc)
{
	struct blk_req *r = (struct blk_req *)br;
	struct virtio_blk *b = r->b;
	uint64_t written = 0;

	if (r->type == VIRTIO_BLK_T_FLUSH)
		STAT_ADD(b, flushes, 1);
	if (rc)
		io_error(b, type_name(r->type), r->sector, rc);
	else
		written = account(b, r->type, r->len);
	*r->status = rc ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
	virtio_pci_complete(&b->vp, r->queue, r->head, (uint32_t)(written + 1));
	free(r);
}

/*
 * Starts a read, write (len > 0) or flush on the store. Returns false when
 * the store would not take it: the caller then does it synchronously.
 */
static bool submit_async(struct virtio_blk *b, unsigned queue, const struct virtq_chain *c,
			 uint32_t type, uint64_t sector, uint64_t len)
{
	bool is_write = type == VIRTIO_BLK_T_OUT;
	unsigned nseg = type == VIRTIO_BLK_T_FLUSH ? 0 : is_write ? c->nr_out : c->nr_in;
	struct blk_req *r = malloc(sizeof(*r) + sizeof(r->iov[0]) * nseg);
	int n = 0;

	if (!r)
		return false;
	if (type != VIRTIO_BLK_T_FLUSH)
		n = rw_iov(c, is_write, len, r->iov);
	r->b = b;
	r->queue = queue;
	r->head = c->head;
	r->type = type;
	r->status = virtq_chain_in_byte(c, c->in_bytes - 1);
	r->sector = sector;
	r->len = len;
	r->br = (struct blockdev_req){
		.op = type == VIRTIO_BLK_T_FLUSH ? BLOCKDEV_REQ_FLUSH :
		      is_write ? BLOCKDEV_REQ_WRITE : BLOCKDEV_REQ_READ,
		.iov = r->iov, .iovcnt = n, .off = sector * SECTOR, .done = blk_req_done,
	};
	if (blockdev_submit(b->bd, b->rings[queue], &r->br)) {
		free(r);
		return false;
	}
	return true;
}

/* The queue loop (virtio_pci.h) on the queue's ring. */
static void blk_loop_wait(void *opaque, unsigned queue)
{
	struct virtio_blk *b = opaque;

	aio_ring_wait(b->rings[queue]);
}

static void blk_loop_wake(void *opaque, unsigned queue)
{
	struct virtio_blk *b = opaque;

	aio_ring_wake(b->rings[queue]);
}

static bool blk_loop_room(void *opaque, unsigned queue)
{
	struct virtio_blk *b = opaque;

	return aio_ring_room(b->rings[queue]) > 0;
}

static const struct virtio_queue_loop blk_loop = {
	.wait = blk_loop_wait,
	.wake = blk_loop_wake,
	.room = blk_loop_room,
};

static void destroy_rings(struct virtio_blk *b)
{
	for (unsigned i = 0; i < VIRTIO_BLK_MAX_QUEUES; i++) {
		aio_ring_destroy(b->rings[i]);
		b->rings[i] = NULL;
	}
}

/* One ring per queue; false (the reason in why) where io_uring cannot be used. */
static bool create_rings(struct virtio_blk *b, unsigned nq, unsigned depth, char *why,
			 size_t whylen)
{
	for (unsigned i = 0; i < nq; i++) {
		if (aio_ring_create(&b->rings[i], depth ? depth : VIRTIO_BLK_RING_DEPTH, why, whylen)) {
			destroy_rings(b);
			return false;
		}
	}
	return true;
}

/* DISCARD and WRITE_ZEROES carry an array of {sector, num_sectors, flags}. */
static uint8_t do_ranges(struct virtio_blk *b, const struct virtq_chain *c, uint32_t type)
{
	uint64_t len = c->out_bytes - HDR_LEN, nseg = len / SEG_LEN;
	bool wz = type == VIRTIO_BLK_T_WRITE_ZEROES;

	if (b->bd->read_only)
		return refuse(b);
	if (len % SEG_LEN || !nseg || nseg > VIRTIO_BLK_MAX_DISCARD_SEG)
		return refuse(b);
	for (uint64_t i = 0; i < nseg; i++) {
		uint8_t raw[SEG_LEN];
		uint64_t sector;
		uint32_t num, flags;
		int rc;

		virtq_chain_read(c, HDR_LEN + i * SEG_LEN, raw, SEG_LEN);
		memcpy(&sector, raw, 8);
		memcpy(&num, raw + 8, 4);
		memcpy(&flags, raw + 12, 4);
		/* Unmap is for write zeroes only; other bits are reserved (5.2.6.2). */
		if (flags & ~(wz ? WZ_UNMAP : 0u))
			return VIRTIO_BLK_S_UNSUPP;
		if (num > VIRTIO_BLK_MAX_DISCARD_SECTORS || !in_range(b, sector, num) ||
		    !aligned(b, sector) || !aligned(b, num))
			return refuse(b);
		if (!num)
			continue;
		rc = wz ? blockdev_write_zeroes(b->bd, sector * SECTOR, (uint64_t)num * SECTOR,
						flags & WZ_UNMAP)
			: blockdev_discard(b->bd, sector * SECTOR, (uint64_t)num * SECTOR);
		if (rc) {
			io_error(b, wz ? "write zeroes" : "discard", sector, rc);
			return VIRTIO_BLK_S_IOERR;
		}
	}
	if (wz)
		STAT_ADD(b, write_zeroes, 1);
	else
		STAT_ADD(b, discards, 1);
	return VIRTIO_BLK_S_OK;
}

static long blk_process(void *opaque, unsigned queue, const struct virtq_chain *c)
{
	struct virtio_blk *b = opaque;
	uint8_t hdr[HDR_LEN], status;
	uint32_t type;
	uint64_t sector, written = 0;
	uint64_t features = __atomic_load_n(&b->vp.guest_features, __ATOMIC_RELAXED);

	if (c->out_bytes < HDR_LEN || c->in_bytes < 1) {
		virtio_pci_fail(&b->vp, "queue %u: request %u has %llu readable and %llu writable "
				"bytes: no room for its header and status", queue, c->head,
				(unsigned long long)c->out_bytes, (unsigned long long)c->in_bytes);
		return -1;
	}
	virtq_chain_read(c, 0, hdr, HDR_LEN);
	memcpy(&type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		uint64_t len;

		status = rw_len(b, c, type == VIRTIO_BLK_T_OUT, sector, &len);
		if (status != VIRTIO_BLK_S_OK)
			break;
		if (len && b->async && submit_async(b, queue, c, type, sector, len))
			return VIRTIO_PCI_DEFERRED;
		status = do_rw(b, c, type == VIRTIO_BLK_T_OUT, sector, len, &written);
		break;
	}
	case VIRTIO_BLK_T_FLUSH: {
		int rc;

		if (b->async && submit_async(b, queue, c, type, 0, 0))
			return VIRTIO_PCI_DEFERRED;
		rc = blockdev_flush(b->bd);

		STAT_ADD(b, flushes, 1);
		if (rc)
			io_error(b, "flush", 0, rc);
		status = rc ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_GET_ID: {
		uint64_t n = c->in_bytes - 1 < VIRTIO_BLK_ID_BYTES ? c->in_bytes - 1
								  : VIRTIO_BLK_ID_BYTES;

		written = virtq_chain_write(c, 0, b->serial, (size_t)n);
		STAT_ADD(b, get_ids, 1);
		status = VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (!(features & (1ULL << (type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_F_DISCARD
									 : VIRTIO_BLK_F_WRITE_ZEROES)))) {
			status = VIRTIO_BLK_S_UNSUPP;
			break;
		}
		status = do_ranges(b, c, type);
		break;
	default:
		STAT_ADD(b, unsupported, 1);
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	virtq_chain_write(c, c->in_bytes - 1, &status, 1);
	return (long)(written + 1);
}

static void blk_config_read(void *opaque, uint64_t off, unsigned len, uint64_t *data)
{
	struct virtio_blk *b = opaque;
	uint64_t v = 0;

	if (off < VIRTIO_BLK_CONFIG_SIZE && len <= VIRTIO_BLK_CONFIG_SIZE - off && len <= 8)
		memcpy(&v, b->config + off, len);
	*data = v;
}

static const struct virtio_dev_ops blk_ops = {
	.process = blk_process,
	.config_read = blk_config_read,
};

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void fill_config(struct virtio_blk *b, unsigned nr_queues)
{
	unsigned bs = b->lbs;

	memset(b->config, 0, sizeof(b->config));
	memcpy(b->config + VIRTIO_BLK_CFG_CAPACITY, &b->capacity, 8);
	/* A chain holds the header and the status besides the data. */
	put32(b->config + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_QUEUE_SIZE - 2);
	put32(b->config + VIRTIO_BLK_CFG_BLK_SIZE, bs);
	put16(b->config + VIRTIO_BLK_CFG_NUM_QUEUES, (uint16_t)nr_queues);
	put32(b->config + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS);
	put32(b->config + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, VIRTIO_BLK_MAX_DISCARD_SEG);
	put32(b->config + VIRTIO_BLK_CFG_DISCARD_ALIGN, bs / SECTOR);
	put32(b->config + VIRTIO_BLK_CFG_MAX_WZ_SECTORS, VIRTIO_BLK_MAX_DISCARD_SECTORS);
	put32(b->config + VIRTIO_BLK_CFG_MAX_WZ_SEG, VIRTIO_BLK_MAX_DISCARD_SEG);
	b->config[VIRTIO_BLK_CFG_WZ_MAY_UNMAP] = b->bd->discard;
	if (b->pbs) {
		b->config[VIRTIO_BLK_CFG_PHYS_BLOCK_EXP] = (uint8_t)__builtin_ctz(b->pbs / bs);
		put16(b->config + VIRTIO_BLK_CFG_MIN_IO_SIZE, (uint16_t)(b->pbs / bs));
	}
}

/* The logical and physical blocks <blockio> asks for, checked against the store's. */
static int set_blocks(struct virtio_blk *b, const struct virtio_blk_opts *o, char *err,
		      size_t errlen)
{
	b->lbs = o->logical_block ? o->logical_block : b->bd->block_size;
	b->pbs = o->physical_block;
	if (b->lbs < SECTOR || b->lbs < b->bd->block_size || (b->lbs & (b->lbs - 1))) {
		snprintf(err, errlen, "virtio-blk %s: logical block size %u does not fit a store "
			 "of %u-byte blocks", o->name, b->lbs, b->bd->block_size);
		return -1;
	}
	if (b->pbs && (b->pbs < b->lbs || (b->pbs & (b->pbs - 1)))) {
		snprintf(err, errlen, "virtio-blk %s: physical block size %u is not a power-of-two "
			 "multiple of the %u-byte logical block", o->name, b->pbs, b->lbs);
		return -1;
	}
	return 0;
}

int virtio_blk_create(struct virtio_blk **out, struct pci_bus *bus,
		      const struct virtio_blk_opts *o, char *err, size_t errlen)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	unsigned nq = o->nr_queues ? o->nr_queues : 1;
	struct virtio_pci_params p = { 0 };
	char why[256];
	uint64_t f;
	int rc;

	*out = NULL;
	if (!b) {
		snprintf(err, errlen, "virtio-blk %s: out of memory", o->name);
		blockdev_close(o->bd);
		return -1;
	}
	if (nq > VIRTIO_BLK_MAX_QUEUES)
		nq = VIRTIO_BLK_MAX_QUEUES;
	b->bd = o->bd;
	b->log = o->log;
	b->log_ctx = o->log_ctx;
	snprintf(b->name, sizeof(b->name), "%s", o->name);
	/* Up to 20 bytes, zero-padded, no terminator needed (5.2.6). */
	if (o->serial)
		memcpy(b->serial, o->serial, strnlen(o->serial, sizeof(b->serial)));
	b->capacity = blockdev_size(b->bd) / SECTOR;
	if (set_blocks(b, o, err, errlen)) {
		blockdev_close(b->bd);
		free(b);
		return -1;
	}
	/* Whole logical blocks only: a partial last one could not be read. */
	b->capacity -= b->capacity % (b->lbs / SECTOR);
	f = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_INDIRECT_DESC |
	    1ULL << VIRTIO_F_EVENT_IDX | 1ULL << VIRTIO_BLK_F_SEG_MAX |
	    1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_FLUSH | 1ULL << VIRTIO_BLK_F_MQ;
	if (b->bd->read_only)
		f |= 1ULL << VIRTIO_BLK_F_RO;
	else
		f |= (o->discard ? 1ULL << VIRTIO_BLK_F_DISCARD : 0) |
		     1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
	if (b->pbs)
		f |= 1ULL << VIRTIO_BLK_F_TOPOLOGY;
	fill_config(b, nq);
	p.name = b->name;
	p.device_type = VIRTIO_ID_BLOCK;
	p.class_code = 0x018000;     /* mass storage, other */
	p.features = f;
	p.nr_queues = nq;
	p.queue_size = VIRTIO_BLK_QUEUE_SIZE;
	p.config_size = VIRTIO_BLK_CONFIG_SIZE;
	p.ops = &blk_ops;
	p.opaque = b;
	p.mem = o->mem;
	p.log = o->log;
	p.log_ctx = o->log_ctx;
	/*
	 * Requests in flight per queue. A store with asynchronous requests has
	 * as many in flight as the guest queues, from one worker. Otherwise the
	 * store blocks in pread/pwrite (or waits on a remote replica), and the
	 * disk only sees as many as there are workers waiting at once.
	 */
	if (o->io_uring && blockdev_has_submit(b->bd)) {
		b->async = create_rings(b, nq, o->ring_depth, why, sizeof(why));
		if (!b->async)
			blog(b, "no asynchronous I/O (%s): %u requests in flight per queue", why,
			     VIRTIO_BLK_QUEUE_THREADS);
	}
	p.queue_threads = VIRTIO_BLK_QUEUE_THREADS;
	p.loop = b->async ? &blk_loop : NULL;
	p.remote = o->remote;
	p.replica = o->replica;
	p.remote_ctx = o->remote_ctx;
	if (virtio_pci_init(&b->vp, &p, err, errlen)) {
		destroy_rings(b);
		blockdev_close(b->bd);
		free(b);
		return -1;
	}
	rc = bus ? pci_bus_add(bus, &b->vp.pci, 0) : 0;
	if (rc < 0) {
		snprintf(err, errlen, "virtio-blk %s: no room on the PCI bus: %s", b->name,
			 strerror(-rc));
		virtio_blk_destroy(b);
		return -1;
	}
	*out = b;
	return 0;
}

/* One line of statistics when the disk goes away: what the guest did with it. */
static void log_stats(struct virtio_blk *b)
{
	char q[256] = "";
	size_t n = 0;
	struct virtio_blk_stats *st = &b->stats;

	for (unsigned i = 0; b->vp.queues && i < b->vp.p.nr_queues && n < sizeof(q); i++)
		n += (size_t)snprintf(q + n, sizeof(q) - n, " q%u=%llu", i,
				      (unsigned long long)b->vp.queues[i].requests);
	blog(b, "reads=%llu (%llu MiB) writes=%llu (%llu MiB) flushes=%llu discards=%llu "
	     "write_zeroes=%llu get_id=%llu errors=%llu unsupported=%llu refused=%llu; "
	     "requests per queue:%s",
	     (unsigned long long)st->reads, (unsigned long long)(st->bytes_read >> 20),
	     (unsigned long long)st->writes, (unsigned long long)(st->bytes_written >> 20),
	     (unsigned long long)st->flushes, (unsigned long long)st->discards,
	     (unsigned long long)st->write_zeroes, (unsigned long long)st->get_ids,
	     (unsigned long long)st->errors, (unsigned long long)st->unsupported,
	     (unsigned long long)st->refused, q);
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	virtio_pci_stop(&b->vp);
	if (b->vp.p.ops)
		log_stats(b);
	virtio_pci_destroy(&b->vp);
	destroy_rings(b);	/* the workers are gone, nothing is in flight */
	if (b->bd && !b->bd->read_only)
		blockdev_flush(b->bd);
	blockdev_close(b->bd);
	free(b);
}
