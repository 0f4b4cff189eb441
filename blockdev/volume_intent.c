// SPDX-License-Identifier: MIT
/*
 * Clearing the write intent of idle chunks (docs/volume.md, "Write
 * intent"), on the maintenance thread.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "blockdev/volume_internal.h"

static bool chunk_dirty(struct volume *vol, uint64_t c)
{
	const struct vlayout *l = &vol->lay;

	for (unsigned k = 0; k < l->replicas; k++) {
		struct vol_replica *r = &vol->rep[vlayout_store(l, c, k)];
		uint64_t slot = vlayout_slot(l, c, r->idx);

		if (vol_current(r, slot) && (vol_entry(r, slot) & VMETA_DIRTY))
			return true;
	}
	return false;
}

static bool idle_since(struct volume *vol, uint64_t c, uint64_t now)
{
	uint64_t lw = __atomic_load_n(&vol->last_write[c], __ATOMIC_ACQUIRE);

	return lw + (uint64_t)vol->idle_ms * 1000000 <= now;
}

static void clear_chunk(struct volume *vol, uint64_t c)
{
	const struct vlayout *l = &vol->lay;

	for (unsigned k = 0; k < l->replicas; k++) {
		struct vol_replica *r = &vol->rep[vlayout_store(l, c, k)];
		uint64_t slot = vlayout_slot(l, c, r->idx), e = vol_entry(r, slot);

		if (vol_current(r, slot) && (e & VMETA_DIRTY))
			vrep_set_entry(r, slot, vmeta_gen(e));
	}
}

/*
 * Chunks idle for idle_ms whose writes all completed before a flush that
 * succeeded are the same on every current copy: their intent can go. The
 * exclusive stripe lock (tried, never waited for) keeps writes out while
 * the entries change; a write that comes after sets the bit again, and its
 * table batch is ordered after this one.
 */
void vol_clear_idle_intent(struct volume *vol)
{
	uint64_t now = vol_now_ns(), start;
	bool any = false;

	for (uint64_t c = 0; c < vol->lay.chunks && !any; c++)
		any = idle_since(vol, c, now) && chunk_dirty(vol, c);
	if (!any)
		return;
	start = vol_now_ns();
	if (vol_flush_all(vol))
		return;
	for (uint64_t c = 0; c < vol->lay.chunks; c++) {
		pthread_rwlock_t *lock = vol_stripe(vol, c);

		if (!chunk_dirty(vol, c) || !idle_since(vol, c, start))
			continue;
		if (pthread_rwlock_trywrlock(lock))
			continue;
		if (__atomic_load_n(&vol->last_write[c], __ATOMIC_ACQUIRE) < start)
			clear_chunk(vol, c);
		pthread_rwlock_unlock(lock);
	}
	for (unsigned i = 0; i < vol->lay.stores; i++) {
		struct vol_replica *r = &vol->rep[i];
		int rc;

		if (vol_state(r) == VOLUME_REPLICA_FAILED)
			continue;
		rc = vrep_sync(r);
		if (rc && rc != -ENODEV)
			vol_mark_failed(vol, r, "writing its table: %s", strerror(-rc));
	}
}
