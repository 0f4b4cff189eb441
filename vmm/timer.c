// SPDX-License-Identifier: MIT
/*
 * Virtual timers. One sorted list and one thread per queue: a machine has
 * a handful of armed timers at any time (PIT, RTC, one LAPIC timer per
 * vCPU), so insertion into a list is cheaper than a heap and simpler.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "vmm/timer.h"

uint64_t timer_monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t timer_clock_monotonic(void *ctx)
{
	(void)ctx;
	return timer_monotonic_ns();
}

void timer_queue_init(struct timer_queue *q, uint64_t (*clock)(void *), void *ctx)
{
	pthread_condattr_t attr;

	memset(q, 0, sizeof(*q));
	pthread_mutex_init(&q->lock, NULL);
	/* The thread sleeps until a deadline on the same clock the devices use. */
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cond, &attr);
	pthread_condattr_destroy(&attr);
	q->clock = clock;
	q->clock_ctx = ctx;
}

void timer_queue_destroy(struct timer_queue *q)
{
	timer_queue_stop(q);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
}

uint64_t timer_queue_now(struct timer_queue *q)
{
	uint64_t now;

	if (q->clock)
		return q->clock(q->clock_ctx);
	pthread_mutex_lock(&q->lock);
	now = q->manual_now;
	pthread_mutex_unlock(&q->lock);
	return now;
}

void timer_queue_set_time(struct timer_queue *q, uint64_t now_ns)
{
	pthread_mutex_lock(&q->lock);
	q->manual_now = now_ns;
	pthread_mutex_unlock(&q->lock);
}

static void list_remove(struct timer_queue *q, struct vtimer *t)
{
	for (struct vtimer **pp = &q->head; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->next = NULL;
	t->armed = false;
}

static void list_insert(struct timer_queue *q, struct vtimer *t)
{
	struct vtimer **pp = &q->head;

	while (*pp && (*pp)->deadline_ns <= t->deadline_ns)
		pp = &(*pp)->next;
	t->next = *pp;
	*pp = t;
	t->armed = true;
}

/* Pops the first expired timer, or NULL. Called with the lock held. */
static struct vtimer *pop_expired(struct timer_queue *q, uint64_t now)
{
	struct vtimer *t = q->head;

	if (!t || t->deadline_ns > now)
		return NULL;
	q->head = t->next;
	t->next = NULL;
	t->armed = false;
	return t;
}

int timer_queue_run(struct timer_queue *q)
{
	int ran = 0;

	for (;;) {
		uint64_t now = timer_queue_now(q);
		struct vtimer *t;

		pthread_mutex_lock(&q->lock);
		t = pop_expired(q, now);
		pthread_mutex_unlock(&q->lock);
		if (!t)
			return ran;
		t->fn(t->opaque, now);
		ran++;
	}
}

static void *timer_thread(void *arg)
{
	struct timer_queue *q = arg;

	pthread_mutex_lock(&q->lock);
	while (!q->stop) {
		uint64_t now = timer_queue_now(q);
		struct vtimer *t = pop_expired(q, now);

		if (t) {
			pthread_mutex_unlock(&q->lock);
			t->fn(t->opaque, now);
			pthread_mutex_lock(&q->lock);
			continue;
		}
		if (!q->head) {
			pthread_cond_wait(&q->cond, &q->lock);
		} else {
			struct timespec ts = {
				.tv_sec = q->head->deadline_ns / 1000000000ULL,
				.tv_nsec = q->head->deadline_ns % 1000000000ULL,
			};
			pthread_cond_timedwait(&q->cond, &q->lock, &ts);
		}
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int timer_queue_start(struct timer_queue *q)
{
	int err;

	/* The thread sleeps on CLOCK_MONOTONIC: only the real clock can drive it. */
	if (q->clock != timer_clock_monotonic)
		return -EINVAL;
	q->stop = false;
	err = pthread_create(&q->thread, NULL, timer_thread, q);
	if (err)
		return -err;
	q->running = true;
	return 0;
}

void timer_queue_stop(struct timer_queue *q)
{
	if (!q->running)
		return;
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->thread, NULL);
	q->running = false;
}

void vtimer_init(struct vtimer *t, struct timer_queue *q, vtimer_fn fn, void *opaque)
{
	memset(t, 0, sizeof(*t));
	t->q = q;
	t->fn = fn;
	t->opaque = opaque;
}

void vtimer_mod(struct vtimer *t, uint64_t deadline_ns)
{
	struct timer_queue *q = t->q;

	pthread_mutex_lock(&q->lock);
	if (t->armed)
		list_remove(q, t);
	t->deadline_ns = deadline_ns;
	list_insert(q, t);
	if (q->head == t)
		pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

void vtimer_del(struct vtimer *t)
{
	struct timer_queue *q = t->q;

	pthread_mutex_lock(&q->lock);
	if (t->armed)
		list_remove(q, t);
	pthread_mutex_unlock(&q->lock);
}

bool vtimer_pending(struct vtimer *t)
{
	bool armed;

	pthread_mutex_lock(&t->q->lock);
	armed = t->armed;
	pthread_mutex_unlock(&t->q->lock);
	return armed;
}
