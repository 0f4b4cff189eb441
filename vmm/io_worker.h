/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_IO_WORKER_H
#define GRAPPE_IO_WORKER_H

#include <pthread.h>
#include <stdbool.h>

#include "vmm/io.h"

/*
 * Device accesses forwarded from other nodes are run here, on the I/O
 * node, in arrival order — not on the fabric's receive thread: a device
 * model may touch guest memory, and under the DSM a page fault needs the
 * receive thread to bring the page in.
 */
#define IO_WORKER_QUEUE 256

struct io_work {
	unsigned src;
	struct io_req req;
};

struct io_worker {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct io_work q[IO_WORKER_QUEUE];
	unsigned head, len;
	bool stop, started;
	pthread_t thread;
	void (*run)(void *ctx, unsigned src, struct io_req *req);
	void *ctx;
};

int io_worker_start(struct io_worker *w, void (*run)(void *ctx, unsigned src, struct io_req *req),
		    void *ctx);
/* Returns -ENOSPC when the queue is full (each vCPU has one access in flight: never). */
int io_worker_push(struct io_worker *w, unsigned src, const struct io_req *req);
void io_worker_stop(struct io_worker *w);

#endif
