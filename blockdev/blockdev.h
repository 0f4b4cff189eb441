/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_BLOCKDEV_H
#define GRAPPE_BLOCKDEV_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * The backing store of a guest disk, as the virtio-blk device model sees
 * it: a raw file or block device (blockdev/file_store.c), a store on
 * another node (store_client.c), the replicated volume (volume.c).
 *
 * Contract (docs/devices.md, "The blockdev interface"):
 *
 *  - Offsets and lengths are in bytes; the device model only passes
 *    multiples of 512 that lie inside [0, size). Buffers are host memory
 *    (for virtio-blk: guest RAM, possibly behind the DSM) with no alignment
 *    promise: an implementation that needs aligned buffers (O_DIRECT) copies.
 *  - Every operation returns 0 or a negative errno, and either completed
 *    as a whole or is reported failed: a read never returns partial data
 *    as success.
 *  - Operations may be called concurrently from several threads (one per
 *    virtqueue). There is no ordering between operations in flight at the
 *    same time, as on a real disk.
 *  - A write that returned 0 may still sit in a volatile cache; flush()
 *    returning 0 means every write that completed before flush() was called
 *    is durable (for the cluster store: on every live replica).
 *  - discard() is a hint: afterwards the range reads back as either its old
 *    contents or zeros. write_zeroes() makes the range read back as zeros;
 *    with may_unmap it may also deallocate it.
 *  - size() is constant for the life of the object.
 */
struct blockdev;
struct aio_ring;

/*
 * An asynchronous read, write or flush (optional: see submit). Same
 * contract as the synchronous operations, but many can be in flight from
 * one thread, so a disk sees the guest's queue depth without a thread per
 * request waiting in the kernel (docs/devices.md, "Requests in flight").
 */
enum blockdev_req_op {
	BLOCKDEV_REQ_READ,
	BLOCKDEV_REQ_WRITE,
	BLOCKDEV_REQ_FLUSH,
};

struct blockdev_req {
	enum blockdev_req_op op;
	const struct iovec *iov;     /* READ, WRITE: the store copies the array itself */
	int iovcnt;
	uint64_t off;
	/*
	 * Called exactly once, with 0 or a negative errno: on the ring's owner
	 * thread, inside aio_ring_wait() or from within submit(); req may be
	 * freed there. The buffers must stay valid until then.
	 */
	void (*done)(struct blockdev_req *req, int rc);
};

struct blockdev_ops {
	int (*read)(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off);
	int (*write)(struct blockdev *bd, const struct iovec *iov, int iovcnt, uint64_t off);
	int (*flush)(struct blockdev *bd);
	int (*discard)(struct blockdev *bd, uint64_t off, uint64_t len);
	int (*write_zeroes)(struct blockdev *bd, uint64_t off, uint64_t len, bool may_unmap);
	uint64_t (*size)(struct blockdev *bd);
	/* Releases the store (after a final flush if it wants one). */
	void (*close)(struct blockdev *bd);
	/*
	 * Optional: starts req on ring (blockdev/aio_ring.h), which the
	 * calling thread owns and waits on. Returns 0 when done() will be
	 * called, or a negative errno when it will not (-EBUSY: the ring is
	 * full; anything else: the caller may do the synchronous operation
	 * instead). No request may be in flight at close().
	 */
	int (*submit)(struct blockdev *bd, struct aio_ring *ring, struct blockdev_req *req);
};

struct blockdev {
	const struct blockdev_ops *ops;
	unsigned block_size;     /* logical block size the guest should use: 512 or 4096 */
	bool read_only;          /* writes, discards and write-zeroes fail with -EROFS */
	bool discard;            /* discard does something (deallocates) */
};

static inline int blockdev_read(struct blockdev *bd, const struct iovec *iov, int iovcnt,
				uint64_t off)
{
	return bd->ops->read(bd, iov, iovcnt, off);
}

static inline int blockdev_write(struct blockdev *bd, const struct iovec *iov, int iovcnt,
				 uint64_t off)
{
	return bd->ops->write(bd, iov, iovcnt, off);
}

static inline int blockdev_flush(struct blockdev *bd)
{
	return bd->ops->flush(bd);
}

static inline int blockdev_discard(struct blockdev *bd, uint64_t off, uint64_t len)
{
	return bd->ops->discard(bd, off, len);
}

static inline int blockdev_write_zeroes(struct blockdev *bd, uint64_t off, uint64_t len,
					bool may_unmap)
{
	return bd->ops->write_zeroes(bd, off, len, may_unmap);
}

static inline uint64_t blockdev_size(struct blockdev *bd)
{
	return bd->ops->size(bd);
}

/* Whether the store takes asynchronous requests. */
static inline bool blockdev_has_submit(const struct blockdev *bd)
{
	return bd->ops->submit != NULL;
}

static inline int blockdev_submit(struct blockdev *bd, struct aio_ring *ring,
				  struct blockdev_req *req)
{
	return bd->ops->submit ? bd->ops->submit(bd, ring, req) : -EOPNOTSUPP;
}

static inline void blockdev_close(struct blockdev *bd)
{
	if (bd)
		bd->ops->close(bd);
}

#endif
