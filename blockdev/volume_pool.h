/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VOLUME_POOL_H
#define GRAPPE_VOLUME_POOL_H

#include <pthread.h>
#include <stdbool.h>

/*
 * A few threads that run the replicated volume's per-replica jobs, so that
 * a write reaches every replica in parallel. A job is a leaf: it does I/O
 * on one store and never waits for another job, so a full queue only
 * delays, it cannot deadlock.
 */
struct vpool_job;
typedef void vpool_fn(struct vpool_job *job);

/* Jobs submitted together, waited for together. */
struct vpool_batch {
	pthread_mutex_t lock;
	pthread_cond_t done;
	unsigned pending;
};

struct vpool_job {
	vpool_fn *fn;
	struct vpool_batch *batch;
	struct vpool_job *next;
};

struct vpool {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct vpool_job *head, *tail;
	bool stop;
	unsigned nthreads;
	pthread_t *threads;
};

/* Returns 0 or a negative errno. */
int vpool_start(struct vpool *p, unsigned nthreads);
/* Runs what is queued, then joins the threads. */
void vpool_stop(struct vpool *p);

void vpool_batch_init(struct vpool_batch *b);
void vpool_batch_destroy(struct vpool_batch *b);
/* Queues job as part of b; job->fn must be set. */
void vpool_submit(struct vpool *p, struct vpool_batch *b, struct vpool_job *job);
/* Returns when every job submitted to b has run. */
void vpool_batch_wait(struct vpool_batch *b);

#endif
