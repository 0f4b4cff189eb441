// SPDX-License-Identifier: MIT
/*
 * An io_uring driven by its owner thread. See aio_ring.h.
 *
 * The owner sleeps in io_uring_enter (io_uring_submit_and_wait), which
 * also submits what it queued since the last call; other threads wake it
 * through an eventfd whose read the ring keeps armed. Everything but the
 * wake flag is the owner's alone: no lock.
 */
#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "blockdev/aio_ring.h"

#define REAP_BATCH 64
#define BACKOFF_MAX_US 10000

struct aio_ring {
	struct io_uring ring;
	int efd;                      /* aio_ring_wake() writes it */
	uint64_t efd_count;           /* where the armed eventfd read lands */
	bool efd_armed;
	int wake_pending;             /* atomic: an eventfd write is on its way */
	unsigned depth, in_flight;
};

/* user_data of the eventfd read; operations are never at this address. */
static char efd_marker;

/*
 * Hands what is prepared to the kernel. Failures before anything is
 * consumed (-EAGAIN: kernel memory; -EBUSY: completions to reap first;
 * -EINTR) leave the entries in the ring: wait a little and try again.
 * Sleeping, not spinning; and with at most depth operations in flight the
 * completion queue (four times that) cannot overflow, so -EBUSY does not
 * arise in practice.
 */
static void flush_sq(struct aio_ring *r)
{
	unsigned backoff = 50;

	while (io_uring_sq_ready(&r->ring)) {
		if (io_uring_submit(&r->ring) >= 0)
			continue;
		usleep(backoff);
		backoff = backoff * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : backoff * 2;
	}
}

/* The submission queue holds twice the depth: an entry is always there, short of a bug. */
static struct io_uring_sqe *get_sqe(struct aio_ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

	if (!sqe) {
		flush_sq(r);
		sqe = io_uring_get_sqe(&r->ring);
	}
	return sqe;
}

static void arm_eventfd(struct aio_ring *r)
{
	struct io_uring_sqe *sqe = get_sqe(r);

	io_uring_prep_read(sqe, r->efd, &r->efd_count, sizeof(r->efd_count), 0);
	io_uring_sqe_set_data(sqe, &efd_marker);
	r->efd_armed = true;
}

static bool valid(const struct aio_ring_op *op)
{
	if (!op->complete || op->fd < 0)
		return false;
	if (op->kind == AIO_RING_FDATASYNC)
		return true;
	return (op->kind == AIO_RING_READV || op->kind == AIO_RING_WRITEV) && op->iovcnt >= 1 &&
	       op->iovcnt <= IOV_MAX && op->off <= (uint64_t)INT64_MAX;
}

int aio_ring_submit(struct aio_ring *r, struct aio_ring_op *op)
{
	struct io_uring_sqe *sqe;

	if (!valid(op))
		return -EINVAL;
	if (r->in_flight >= r->depth)
		return -EBUSY;
	sqe = get_sqe(r);
	switch (op->kind) {
	case AIO_RING_READV:
		io_uring_prep_readv(sqe, op->fd, op->iov, (unsigned)op->iovcnt, op->off);
		break;
	case AIO_RING_WRITEV:
		io_uring_prep_writev(sqe, op->fd, op->iov, (unsigned)op->iovcnt, op->off);
		break;
	case AIO_RING_FDATASYNC:
		io_uring_prep_fsync(sqe, op->fd, IORING_FSYNC_DATASYNC);
		break;
	}
	io_uring_sqe_set_data(sqe, op);
	r->in_flight++;
	return 0;
}

unsigned aio_ring_room(const struct aio_ring *r)
{
	return r->depth - r->in_flight;
}

unsigned aio_ring_in_flight(const struct aio_ring *r)
{
	return r->in_flight;
}

/* Every completion waiting; true if the eventfd read was among them. */
static bool reap(struct aio_ring *r)
{
	struct aio_ring_op *ops[REAP_BATCH];
	int res[REAP_BATCH];
	bool woken = false;
	unsigned n;

	do {
		struct io_uring_cqe *cqe;
		unsigned head;

		n = 0;
		io_uring_for_each_cqe(&r->ring, head, cqe) {
			if (n == REAP_BATCH)
				break;
			ops[n] = io_uring_cqe_get_data(cqe);
			res[n] = cqe->res;
			n++;
		}
		/* Released first: complete() may queue new entries. */
		io_uring_cq_advance(&r->ring, n);
		for (unsigned i = 0; i < n; i++) {
			if ((void *)ops[i] == &efd_marker) {
				woken = true;
				r->efd_armed = false;
				continue;
			}
			r->in_flight--;
			/* op may be freed by complete(): not touched afterwards. */
			ops[i]->complete(ops[i], res[i]);
		}
	} while (n == REAP_BATCH);
	return woken;
}

bool aio_ring_wait(struct aio_ring *r)
{
	int rc;

	if (!r->efd_armed)
		arm_eventfd(r);
	rc = io_uring_submit_and_wait(&r->ring, 1);
	if (rc < 0 && rc != -EINTR && rc != -ETIME)
		flush_sq(r);
	if (!reap(r))
		return false;
	/*
	 * An exchange, not a store: it reads the waker's exchange, so what the
	 * waker did before waking (a kick flag set) is visible to our caller.
	 * A wake from now on writes the eventfd again.
	 */
	__atomic_exchange_n(&r->wake_pending, 0, __ATOMIC_SEQ_CST);
	return true;
}

void aio_ring_wake(struct aio_ring *r)
{
	uint64_t one = 1;

	if (__atomic_exchange_n(&r->wake_pending, 1, __ATOMIC_SEQ_CST))
		return;
	/* Cannot fail short of a bug: the counter is far from overflowing. */
	while (write(r->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

int aio_ring_create(struct aio_ring **out, unsigned depth, char *err, size_t errlen)
{
	struct aio_ring *r;
	int rc;

	*out = NULL;
	if (depth < 4 || depth > 4096 || (depth & (depth - 1))) {
		snprintf(err, errlen, "io_uring: depth %u is not a power of two in 4..4096", depth);
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "io_uring: out of memory");
		return -ENOMEM;
	}
	r->depth = depth;
	r->efd = eventfd(0, EFD_CLOEXEC);
	if (r->efd < 0) {
		rc = -errno;
		snprintf(err, errlen, "io_uring: eventfd: %s", strerror(-rc));
		free(r);
		return rc;
	}
	/* Twice the depth: the operations and the eventfd read always find an entry. */
	rc = io_uring_queue_init(2 * depth, &r->ring, 0);
	if (rc < 0) {
		snprintf(err, errlen, "io_uring: %s", strerror(-rc));
		close(r->efd);
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void aio_ring_destroy(struct aio_ring *r)
{
	if (!r)
		return;
	/* The armed eventfd read, if any, is cancelled with the ring. */
	io_uring_queue_exit(&r->ring);
	close(r->efd);
	free(r);
}
