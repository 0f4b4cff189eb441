// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>

#include "vmm/io_worker.h"

static void *worker(void *arg)
{
	struct io_worker *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct io_work job;

		while (!w->len && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stop)
			break;
		job = w->q[w->head];
		w->head = (w->head + 1) % IO_WORKER_QUEUE;
		w->len--;
		pthread_mutex_unlock(&w->lock);
		w->run(w->ctx, job.src, &job.req);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int io_worker_start(struct io_worker *w, void (*run)(void *ctx, unsigned src, struct io_req *req),
		    void *ctx)
{
	int err;

	memset(w, 0, sizeof(*w));
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->run = run;
	w->ctx = ctx;
	err = pthread_create(&w->thread, NULL, worker, w);
	if (err)
		return -err;
	pthread_setname_np(w->thread, "io-worker");
	w->started = true;
	return 0;
}

int io_worker_push(struct io_worker *w, unsigned src, const struct io_req *req)
{
	int rc = 0;

	pthread_mutex_lock(&w->lock);
	if (w->len == IO_WORKER_QUEUE || w->stop) {
		rc = -ENOSPC;
	} else {
		w->q[(w->head + w->len) % IO_WORKER_QUEUE] = (struct io_work){ src, *req };
		w->len++;
		pthread_cond_signal(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

void io_worker_stop(struct io_worker *w)
{
	if (!w->started)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	w->started = false;
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
}
