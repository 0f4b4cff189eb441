// SPDX-License-Identifier: MIT
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsm/dsm_loop.h"

struct lmsg {
	struct lmsg *next;
	struct dsm_msg msg;
	bool has_page;
	uint8_t page[] __attribute__((aligned(16)));
};

struct lep {
	struct dsm_loop *l;
	unsigned self;
	struct dsm_node *node;
	pthread_t thread;
	bool running;
	/* per source FIFO */
	struct lmsg *head[DSM_MAX_NODES], *tail[DSM_MAX_NODES];
	unsigned queued, busy;
	unsigned rr;
	uint64_t rnd;
	_Atomic uint64_t sent;
	_Atomic bool dead;
};

struct dsm_loop {
	unsigned nr, flags;
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* something queued, or stopping */
	pthread_cond_t idle;      /* something delivered */
	bool stop;
	struct lep ep[];
};

int dsm_loop_create(unsigned nr_nodes, unsigned flags, struct dsm_loop **out)
{
	struct dsm_loop *l;

	if (!nr_nodes || nr_nodes > DSM_MAX_NODES)
		return -EINVAL;
	l = calloc(1, sizeof(*l) + nr_nodes * sizeof(l->ep[0]));
	if (!l)
		return -ENOMEM;
	l->nr = nr_nodes;
	l->flags = flags;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	pthread_cond_init(&l->idle, NULL);
	for (unsigned i = 0; i < nr_nodes; i++) {
		l->ep[i].l = l;
		l->ep[i].self = i;
		l->ep[i].rnd = 0x9e3779b97f4a7c15ULL * (i + 1);
	}
	*out = l;
	return 0;
}

void dsm_loop_attach(struct dsm_loop *l, unsigned node, struct dsm_node *n)
{
	l->ep[node].node = n;
}

static int loop_send(void *ctx, unsigned dst, const struct dsm_msg *msg, const void *page)
{
	struct lep *src = ctx;
	struct dsm_loop *l = src->l;
	struct lmsg *m;
	struct lep *d;

	if (dst >= l->nr)
		return -EINVAL;
	d = &l->ep[dst];
	if (atomic_load(&src->dead))
		return 0;             /* a dead node's words are lost */
	if (atomic_load(&d->dead))
		return -EPIPE;
	m = malloc(sizeof(*m) + (page ? DSM_PAGE_SIZE : 0));
	if (!m)
		return -ENOMEM;
	m->next = NULL;
	m->msg = *msg;
	m->has_page = page != NULL;
	if (page)
		memcpy(m->page, page, DSM_PAGE_SIZE);
	pthread_mutex_lock(&l->lock);
	if (d->tail[src->self])
		d->tail[src->self]->next = m;
	else
		d->head[src->self] = m;
	d->tail[src->self] = m;
	d->queued++;
	atomic_fetch_add(&src->sent, 1);
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

struct dsm_transport_ops dsm_loop_ops(struct dsm_loop *l, unsigned node)
{
	return (struct dsm_transport_ops){ .send = loop_send, .ctx = &l->ep[node] };
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The next source to serve: round robin, or at random (FIFO per pair either way). */
static int pick(struct lep *e)
{
	unsigned nr = e->l->nr, start;

	if (!e->queued)
		return -1;
	start = (e->l->flags & DSM_LOOP_SHUFFLE) ? (unsigned)(xorshift(&e->rnd) % nr) : e->rr;
	for (unsigned i = 0; i < nr; i++) {
		unsigned s = (start + i) % nr;

		if (e->head[s]) {
			e->rr = (s + 1) % nr;
			return (int)s;
		}
	}
	return -1;
}

static void *deliver_main(void *arg)
{
	struct lep *e = arg;
	struct dsm_loop *l = e->l;
	struct lmsg *m;
	int s = -1;

	pthread_mutex_lock(&l->lock);
	for (;;) {
		while (!l->stop && (s = pick(e)) < 0)
			pthread_cond_wait(&l->cond, &l->lock);
		if (l->stop)
			break;
		m = e->head[s];
		e->head[s] = m->next;
		if (!e->head[s])
			e->tail[s] = NULL;
		e->queued--;
		e->busy++;
		pthread_mutex_unlock(&l->lock);
		if (!atomic_load(&e->dead) && e->node)
			dsm_receive(e->node, (unsigned)s, &m->msg, m->has_page ? m->page : NULL);
		free(m);
		pthread_mutex_lock(&l->lock);
		e->busy--;
		pthread_cond_broadcast(&l->idle);
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

int dsm_loop_start(struct dsm_loop *l)
{
	for (unsigned i = 0; i < l->nr; i++) {
		if (pthread_create(&l->ep[i].thread, NULL, deliver_main, &l->ep[i]))
			return -EAGAIN;
		l->ep[i].running = true;
	}
	return 0;
}

static bool all_idle(struct dsm_loop *l)
{
	for (unsigned i = 0; i < l->nr; i++)
		if (l->ep[i].queued || l->ep[i].busy)
			return false;
	return true;
}

int dsm_loop_drain(struct dsm_loop *l, unsigned timeout_ms)
{
	struct timespec ts;
	int r = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&l->lock);
	while (!all_idle(l) && r == 0)
		r = pthread_cond_timedwait(&l->idle, &l->lock, &ts);
	pthread_mutex_unlock(&l->lock);
	return r ? -ETIMEDOUT : 0;
}

void dsm_loop_kill(struct dsm_loop *l, unsigned node)
{
	atomic_store(&l->ep[node].dead, true);
	for (unsigned i = 0; i < l->nr; i++)
		if (i != node && !atomic_load(&l->ep[i].dead) && l->ep[i].node)
			dsm_peer_down(l->ep[i].node, node, "killed by the test");
}

uint64_t dsm_loop_sent(struct dsm_loop *l, unsigned node)
{
	return atomic_load(&l->ep[node].sent);
}

void dsm_loop_destroy(struct dsm_loop *l)
{
	struct lmsg *m;

	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	for (unsigned i = 0; i < l->nr; i++) {
		if (l->ep[i].running)
			pthread_join(l->ep[i].thread, NULL);
		for (unsigned s = 0; s < l->nr; s++)
			while ((m = l->ep[i].head[s])) {
				l->ep[i].head[s] = m->next;
				free(m);
			}
	}
	pthread_cond_destroy(&l->cond);
	pthread_cond_destroy(&l->idle);
	pthread_mutex_destroy(&l->lock);
	free(l);
}
