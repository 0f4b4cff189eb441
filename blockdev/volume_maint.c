// SPDX-License-Identifier: MIT
/*
 * The replicated volume's maintenance thread: probes failed stores every
 * probe_ms, clears idle chunks' write intent, and runs resync steps in
 * between, yielding after each so that guest I/O waiting on a chunk lock
 * goes first.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockdev/volume_internal.h"

#define COPY_BUF_MAX  (4ull << 20)

static void probe(struct volume *vol)
{
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];
		char why[400];
		int rc;

		if (vol_state(r) != VOLUME_REPLICA_FAILED)
			continue;
		rc = vol_probe_store(vol, i, why, sizeof(why));
		if (rc >= 0) {
			if (!rc)
				r->probe_note[0] = 0;
			continue;
		}
		if (strcmp(why, r->probe_note)) {
			snprintf(r->probe_note, sizeof(r->probe_note), "%s", why);
			vol_log(vol, "%s is still out of service: %s", r->name, why);
		}
	}
}

static uint64_t clean_period_ms(const struct volume *vol)
{
	uint64_t p = vol->idle_ms / 2;

	return p < 10 ? 10 : p > 1000 ? 1000 : p;
}

static void wait_until(struct volume *vol, uint64_t deadline_ns)
{
	struct timespec ts;

	pthread_mutex_lock(&vol->maint_lock);
	if (!vol->maint_stop && !vol->maint_kick) {
		ts.tv_sec = (time_t)(deadline_ns / 1000000000);
		ts.tv_nsec = (long)(deadline_ns % 1000000000);
		pthread_cond_timedwait(&vol->maint_cond, &vol->maint_lock, &ts);
	}
	vol->maint_kick = false;
	pthread_mutex_unlock(&vol->maint_lock);
}

static bool stopping(struct volume *vol)
{
	bool stop;

	pthread_mutex_lock(&vol->maint_lock);
	stop = vol->maint_stop;
	pthread_mutex_unlock(&vol->maint_lock);
	return stop;
}

static void *maint_main(void *arg)
{
	struct volume *vol = arg;
	uint64_t next_probe = 0, next_clean = vol_now_ns() + clean_period_ms(vol) * 1000000;

	while (!stopping(vol)) {
		uint64_t now = vol_now_ns();

		if (now >= next_probe) {
			probe(vol);
			next_probe = now + (uint64_t)vol->probe_ms * 1000000;
		}
		if (now >= next_clean) {
			vol_clear_idle_intent(vol);
			next_clean = now + clean_period_ms(vol) * 1000000;
		}
		if (vol_resync_step(vol)) {
			sched_yield();      /* guest I/O waiting on a stripe goes first */
			continue;
		}
		wait_until(vol, next_probe < next_clean ? next_probe : next_clean);
	}
	return NULL;
}

int vol_maint_start(struct volume *vol)
{
	pthread_condattr_t attr;
	int rc;

	vol->copy_len = vol->lay.chunk_size < COPY_BUF_MAX ? vol->lay.chunk_size : COPY_BUF_MAX;
	if (posix_memalign((void **)&vol->copy_buf, VLAYOUT_BLOCK, vol->copy_len))
		return -ENOMEM;
	/* Deadlines are CLOCK_MONOTONIC, like vol_now_ns. */
	pthread_cond_destroy(&vol->maint_cond);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&vol->maint_cond, &attr);
	pthread_condattr_destroy(&attr);
	vol->maint_stop = vol->maint_kick = false;
	rc = pthread_create(&vol->maint, NULL, maint_main, vol);
	if (rc)
		return -rc;
	vol->maint_running = true;
	return 0;
}

void vol_maint_stop(struct volume *vol)
{
	if (!vol->maint_running)
		return;
	pthread_mutex_lock(&vol->maint_lock);
	vol->maint_stop = true;
	pthread_cond_broadcast(&vol->maint_cond);
	pthread_mutex_unlock(&vol->maint_lock);
	pthread_join(vol->maint, NULL);
	vol->maint_running = false;
}

void vol_maint_kick(struct volume *vol)
{
	pthread_mutex_lock(&vol->maint_lock);
	vol->maint_kick = true;
	pthread_cond_broadcast(&vol->maint_cond);
	pthread_mutex_unlock(&vol->maint_lock);
}
