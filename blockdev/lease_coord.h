/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_LEASE_COORD_H
#define GRAPPE_LEASE_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockdev/lease_msg.h"
#include "blockdev/store_msg.h"

/*
 * The coordinator of a volume's read leases (docs/volume.md, "Read
 * leases"), on the I/O node: it grants a serving node a lease on a region
 * of chunks of the store that node holds when every copy of the region on
 * that store is current, and revokes it — and waits for the node's
 * acknowledgement, or its death — before anything makes one of those
 * copies stale. The volume calls the revocations; the fabric thread
 * delivers requests and acknowledgements.
 *
 * Lock order: the volume's locks (state_lock, a chunk stripe), then the
 * coordinator's own lock. Its `current` callback runs under that lock and
 * must only read atomics.
 */
#define LEASE_NO_HOLDER UINT32_MAX
#define LEASE_REGION_CHUNKS 64

struct lease_coord;

/* Whether every copy of chunks [first, first + count) held by store is current. */
typedef bool (*lease_current_fn)(void *ctx, unsigned store, uint64_t first, uint64_t count);

struct lease_coord_config {
	uint32_t volume;                  /* the id in every message */
	unsigned stores;                  /* N */
	uint64_t chunks;                  /* in the volume */
	unsigned region_chunks;           /* chunks per lease; 0 = LEASE_REGION_CHUNKS */
	/* The node that reads store s locally, LEASE_NO_HOLDER for none (the I/O node's own). */
	uint32_t holder[LEASE_MAX_STORES];
	store_send_fn send;               /* fabric_sendv's shape; req_id 0 */
	store_log_fn log;
	void *ctx;
};

struct lease_coord_stats {
	uint64_t granted, refused, revoked, leases;  /* leases: held now */
};

int lease_coord_create(const struct lease_coord_config *cfg, struct lease_coord **out,
		       char *err, size_t errlen);
/*
 * The volume it answers for (current != NULL), or none: from then on every
 * request is refused and revocations return at once. Returns once no
 * callback into the previous volume is running.
 */
void lease_coord_bind(struct lease_coord *lc, lease_current_fn current, void *ctx);
/* A REQUEST or an ACK, on the fabric thread (never blocks on I/O). */
void lease_coord_receive(struct lease_coord *lc, unsigned src, uint16_t type,
			 const void *payload, size_t len);
/* The node is dead: its leases are void, nobody waits for its acknowledgements. */
void lease_coord_peer_down(struct lease_coord *lc, unsigned node);
/*
 * Revokes the lease on (store, region), or every lease on the store with
 * LEASE_ALL_REGIONS, and returns when the holder acknowledged (or died);
 * also waits for a revocation of the same leases already under way. Cheap
 * when nothing is leased.
 */
void lease_coord_revoke(struct lease_coord *lc, unsigned store, uint64_t region);
void lease_coord_revoke_chunk(struct lease_coord *lc, unsigned store, uint64_t chunk);
void lease_coord_stats(struct lease_coord *lc, struct lease_coord_stats *st);
/* After the fabric is gone (no receive can run). */
void lease_coord_destroy(struct lease_coord *lc);

#endif
