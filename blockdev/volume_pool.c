// SPDX-License-Identifier: MIT
/* The replicated volume's job threads (volume_pool.h). */
#include <errno.h>
#include <stdlib.h>

#include "blockdev/volume_pool.h"

static void finish(struct vpool_job *job)
{
	struct vpool_batch *b = job->batch;

	pthread_mutex_lock(&b->lock);
	if (--b->pending == 0)
		pthread_cond_broadcast(&b->done);
	pthread_mutex_unlock(&b->lock);
}

static void *worker(void *arg)
{
	struct vpool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct vpool_job *job = p->head;

		if (!job) {
			if (p->stop)
				break;
			pthread_cond_wait(&p->wake, &p->lock);
			continue;
		}
		p->head = job->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		job->fn(job);
		/* The batch may be freed by its waiter as soon as this returns. */
		finish(job);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int vpool_start(struct vpool *p, unsigned nthreads)
{
	p->head = p->tail = NULL;
	p->stop = false;
	p->nthreads = 0;
	p->threads = calloc(nthreads, sizeof(*p->threads));
	if (!p->threads)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	for (unsigned i = 0; i < nthreads; i++) {
		int rc = pthread_create(&p->threads[i], NULL, worker, p);

		if (rc) {
			vpool_stop(p);
			return -rc;
		}
		p->nthreads++;
	}
	return 0;
}

void vpool_stop(struct vpool *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	free(p->threads);
	p->threads = NULL;
	p->nthreads = 0;
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
}

void vpool_batch_init(struct vpool_batch *b)
{
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->done, NULL);
	b->pending = 0;
}

void vpool_batch_destroy(struct vpool_batch *b)
{
	pthread_cond_destroy(&b->done);
	pthread_mutex_destroy(&b->lock);
}

void vpool_submit(struct vpool *p, struct vpool_batch *b, struct vpool_job *job)
{
	job->batch = b;
	job->next = NULL;
	pthread_mutex_lock(&b->lock);
	b->pending++;
	pthread_mutex_unlock(&b->lock);
	pthread_mutex_lock(&p->lock);
	if (p->tail)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
}

void vpool_batch_wait(struct vpool_batch *b)
{
	pthread_mutex_lock(&b->lock);
	while (b->pending)
		pthread_cond_wait(&b->done, &b->lock);
	pthread_mutex_unlock(&b->lock);
}
