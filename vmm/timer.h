/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_TIMER_H
#define GRAPPE_TIMER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Virtual time for device models (PIT, RTC, LAPIC timers, PM timer).
 *
 * A timer queue owns a clock and a list of armed timers. In the VMM one
 * thread sleeps until the earliest deadline and runs the expired callbacks;
 * in a unit test there is no thread: the test sets the clock by hand and calls
 * timer_queue_run() so a device model can be driven deterministically.
 *
 * Callbacks run with the queue's lock released, on the queue's thread. A
 * callback may re-arm its own timer.
 */
struct vtimer;
typedef void (*vtimer_fn)(void *opaque, uint64_t now_ns);

struct vtimer {
	struct timer_queue *q;
	vtimer_fn fn;
	void *opaque;
	uint64_t deadline_ns;
	bool armed;
	struct vtimer *next;
};

struct timer_queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vtimer *head;       /* sorted by deadline */
	uint64_t (*clock)(void *ctx);
	void *clock_ctx;
	uint64_t manual_now;       /* used when clock is NULL (tests) */
	pthread_t thread;
	bool running;
	bool stop;
};

/* Real time: CLOCK_MONOTONIC in nanoseconds. */
uint64_t timer_monotonic_ns(void);
/* The clock callback for a real-time queue: timer_queue_init(q, timer_clock_monotonic, NULL). */
uint64_t timer_clock_monotonic(void *ctx);

/* clock == NULL selects a manual clock set with timer_queue_set_time(). */
void timer_queue_init(struct timer_queue *q, uint64_t (*clock)(void *), void *ctx);
void timer_queue_destroy(struct timer_queue *q);
uint64_t timer_queue_now(struct timer_queue *q);
void timer_queue_set_time(struct timer_queue *q, uint64_t now_ns);
/* Runs every callback whose deadline is <= now; returns how many ran. */
int timer_queue_run(struct timer_queue *q);
/* Starts / stops the thread that runs callbacks in real time. */
int timer_queue_start(struct timer_queue *q);
void timer_queue_stop(struct timer_queue *q);

void vtimer_init(struct vtimer *t, struct timer_queue *q, vtimer_fn fn, void *opaque);
void vtimer_mod(struct vtimer *t, uint64_t deadline_ns);
void vtimer_del(struct vtimer *t);
bool vtimer_pending(struct vtimer *t);

#endif
