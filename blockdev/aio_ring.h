/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_AIO_RING_H
#define GRAPPE_AIO_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * An io_uring (liburing) driven by one thread, its owner: the engine behind
 * asynchronous disk requests (docs/devices.md, "Requests in flight"). A
 * virtqueue's worker owns one: it queues the requests it pops
 * (aio_ring_submit), then waits (aio_ring_wait), which hands everything
 * queued to the kernel in one system call, sleeps until an operation
 * completes or another thread calls aio_ring_wake() (a kick), and runs the
 * completions, all on the owner thread.
 *
 * Why one thread for everything: io_uring posts many completions (direct
 * I/O among them) through task work of the task that submitted, so a
 * submitter other than the waiter would be woken for each completion only
 * to post it; and every hand-off between threads is a context switch, what
 * a host short of CPUs (the lab above all, where each is emulated) pays
 * most for. Here a request costs the kick that wakes the owner and the
 * interrupt it raises when done, as with a synchronous worker, while any
 * number are in flight.
 *
 * At most `depth` operations are in flight: aio_ring_submit() says -EBUSY
 * beyond that, and the owner stops taking requests until some complete.
 */

enum aio_ring_kind {
	AIO_RING_READV,
	AIO_RING_WRITEV,
	AIO_RING_FDATASYNC,
};

struct aio_ring_op {
	enum aio_ring_kind kind;
	int fd;
	const struct iovec *iov;     /* READV, WRITEV: valid until complete() */
	int iovcnt;                  /* 1..IOV_MAX */
	uint64_t off;
	/*
	 * On the owner thread, inside aio_ring_wait(): res is the system
	 * call's result (bytes or -errno). The op no longer counts as in
	 * flight, so complete() may submit it (or another) again.
	 */
	void (*complete)(struct aio_ring_op *op, int res);
};

struct aio_ring;

/*
 * Sets up a ring for `depth` operations (a power of two, 4..4096). Returns
 * 0, or a negative errno with a message in err (io_uring missing or
 * forbidden, out of memory...): the caller then works synchronously.
 */
int aio_ring_create(struct aio_ring **out, unsigned depth, char *err, size_t errlen);
/* Owner: queues op for the next aio_ring_wait(). 0, -EBUSY (depth in flight), -EINVAL. */
int aio_ring_submit(struct aio_ring *r, struct aio_ring_op *op);
/* Owner: how many more operations can be submitted now. */
unsigned aio_ring_room(const struct aio_ring *r);
/* Owner: operations submitted whose complete() has not been called. */
unsigned aio_ring_in_flight(const struct aio_ring *r);
/*
 * Owner: submits what is queued, sleeps until something completes or
 * aio_ring_wake() was called, and runs the completions. Returns true when
 * woken by aio_ring_wake() (since the previous return).
 */
bool aio_ring_wait(struct aio_ring *r);
/* Any thread: makes the owner's aio_ring_wait() return (once, however many calls). */
void aio_ring_wake(struct aio_ring *r);
/* Frees the ring; nothing may be in flight. NULL is fine. */
void aio_ring_destroy(struct aio_ring *r);

#endif
