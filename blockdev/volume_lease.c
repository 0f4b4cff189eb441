// SPDX-License-Identifier: MIT
/*
 * The volume's side of read leases (docs/volume.md, "Read leases"): what
 * the coordinator may grant (copies that are current), and the revocations
 * the volume makes before a copy stops being current or misses a write.
 */
#include "blockdev/lease_coord.h"
#include "blockdev/volume_internal.h"

static bool copies_current(void *ctx, unsigned store, uint64_t first, uint64_t count)
{
	struct volume *vol = ctx;
	const struct vlayout *l = &vol->lay;
	struct vol_replica *r;

	if (store >= l->stores)
		return false;
	r = &vol->rep[store];
	for (uint64_t c = first; c < first + count && c < l->chunks; c++)
		if (vlayout_replica_of(l, c, store) >= 0 && !vol_current(r, vlayout_slot(l, c, store)))
			return false;
	return true;
}

void volume_set_leases(struct volume *vol, struct lease_coord *lc)
{
	struct lease_coord *old = __atomic_exchange_n(&vol->leases, lc, __ATOMIC_ACQ_REL);

	if (old && old != lc)
		lease_coord_bind(old, NULL, NULL);
	if (lc)
		lease_coord_bind(lc, copies_current, vol);
}

void vol_revoke_store(struct volume *vol, unsigned store)
{
	struct lease_coord *lc = __atomic_load_n(&vol->leases, __ATOMIC_ACQUIRE);

	if (lc)
		lease_coord_revoke(lc, store, LEASE_ALL_REGIONS);
}

void vol_revoke_chunk(struct volume *vol, unsigned store, uint64_t chunk)
{
	struct lease_coord *lc = __atomic_load_n(&vol->leases, __ATOMIC_ACQUIRE);

	if (lc)
		lease_coord_revoke_chunk(lc, store, chunk);
}
