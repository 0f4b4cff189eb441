/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_TEST_LOOPBACK_FIXTURE_H
#define GRAPPE_TEST_LOOPBACK_FIXTURE_H

/*
 * One direction of a link between two nodes in one process, for tests:
 * frames sent to node `to_node` are delivered in order by the link's own
 * thread, as the fabric's receive thread delivers them. Shared by
 * blockdev/test_lease.c and vmm/test_volume_host.c.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef void loopback_deliver_fn(void *to, unsigned src, uint16_t type, uint64_t req_id,
				 const void *p, size_t len);

struct loopback_frame;

struct loopback_link {
	pthread_mutex_t lock;        /* guards the queue, stop, drop and sent */
	pthread_cond_t cond;
	struct loopback_frame *q, **tail;
	bool stop;
	bool drop;                   /* frames sent now are lost (as with a node that fails) */
	unsigned sent;               /* frames sent, lost or not */
	unsigned from, to_node;
	loopback_deliver_fn *deliver;
	void *to;                    /* deliver()'s first argument */
	pthread_t thread;
};

/* A transport's send (ctx: the link): -ENOTCONN for a node it does not reach. */
int loopback_link_send(void *ctx, unsigned dst, uint16_t type, uint64_t req_id,
		       const struct iovec *iov, int iovcnt);
void loopback_link_start(struct loopback_link *l, unsigned from, unsigned to_node,
			 loopback_deliver_fn *deliver, void *to);
/* Delivers what is queued, then joins the thread. */
void loopback_link_stop(struct loopback_link *l);

#endif
