/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VOLUME_H
#define GRAPPE_VOLUME_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockdev/blockdev.h"

/*
 * The replicated cluster volume (docs/volume.md): one struct blockdev built
 * from N stores (one per host; each a struct blockdev: a local file_store
 * or a remote store proxy), chunked, striped, each chunk on R of them.
 * Everything runs in the I/O node's process; a remote store is just a
 * blockdev whose operations go over the network.
 */

#define VOLUME_MAX_STORES 64
#define VOLUME_NO_LOCAL   UINT_MAX

struct volume;

struct volume_config {
	const char *name;             /* for log lines: "volume vol0: ..." */
	uint64_t size;                /* bytes, a multiple of 512 (of 4096 if a store needs it) */
	uint64_t chunk_size;          /* power of two, 64 KiB..1 GiB; 0 = 1 MiB */
	unsigned stores;              /* N */
	unsigned replicas;            /* R, 1..N; 0 = min(2, N) */
	const char *const *store_names; /* N names for messages (paths, hosts), or NULL */
	/* Failures, resyncs, opening; called from any thread, one line each. */
	void (*log)(void *ctx, const char *msg);
	void *log_ctx;
	unsigned workers;             /* threads writing replicas in parallel; 0 = 2 * N, up to 16 */
	unsigned probe_ms;            /* failed stores probed every; 0 = 1000 */
	unsigned idle_ms;             /* a chunk's write intent is cleared after idle; 0 = 5000 */
	/*
	 * Optional: how the probe gets a store back that has no blockdev (it
	 * was unreachable when the volume opened) or whose blockdev cannot
	 * recover by itself (a remote store whose requests timed out). Called
	 * on the maintenance thread for each failed store, every probe_ms,
	 * with its current blockdev (NULL if none; it stays the volume's).
	 * Returns 1 with a fresh blockdev in *out, which the probe attaches
	 * as volume_replica_reattach() would (judged, then resynchronised) and
	 * owns from then on, taken or refused; 0 to probe the current one as
	 * it is; -1 with the reason in why when the store cannot be reached
	 * now (logged when the reason changes). It may block (a remote OPEN
	 * waits for its timeout), which delays the volume's other background
	 * work, never guest I/O.
	 */
	int (*reopen)(void *ctx, unsigned idx, struct blockdev *cur, struct blockdev **out,
		      char *why, size_t whylen);
	void *reopen_ctx;
};

enum volume_replica_state {
	VOLUME_REPLICA_LIVE,          /* every chunk it holds is current */
	VOLUME_REPLICA_FAILED,        /* not used; probed if it has a blockdev */
	VOLUME_REPLICA_RESYNCING,     /* used for its current chunks; stale ones being copied */
};

struct volume_replica_stats {
	enum volume_replica_state state;
	bool attached;                /* has a blockdev (a failed store may have none) */
	uint64_t chunks;              /* chunks this store holds */
	uint64_t chunks_stale;        /* of those, not current: to copy or (resyncing) to check;
				       * for a failed store, those written since it was lost */
	uint64_t chunks_resynced;     /* copied to this store since open */
	uint64_t bytes_read;          /* data read from the store (guest and resync) */
	uint64_t bytes_written;       /* data written to the store (guest and resync) */
	uint64_t errors;              /* failed operations */
};

struct volume_stats {
	unsigned stores, replicas;
	uint64_t size, chunk_size, chunks;
	uint64_t generation;          /* G: grows whenever a store is lost */
	bool degraded;                /* some store is failed or resyncing */
	uint64_t chunks_unavailable;  /* no current replica left: I/O there fails */
	uint64_t chunks_stale;        /* sum over stores */
	uint64_t chunks_resynced;     /* sum over stores */
	struct volume_replica_stats replica[VOLUME_MAX_STORES];
};

/*
 * Opens (or creates) the volume on stores[0..N) (NULL = unavailable now;
 * it can come later with volume_replica_reattach). local_store is the
 * index of the store on this host (reads prefer it) or VOLUME_NO_LOCAL.
 *
 *  - every store present and all-zero: a new volume is formatted;
 *  - some stores valid, some all-zero: the zero ones are new members,
 *    formatted and then resynchronised;
 *  - a store with a damaged or foreign header or table, a geometry that
 *    differs from cfg, too small for the layout, or not enough stores for a
 *    current copy of every chunk: -1 with the reason in err ("store 1
 *    (/path): header: checksum mismatch"), and nothing written anywhere.
 *
 * On success the volume owns the stores (closes them); on failure the
 * caller still does.
 */
int volume_open(const struct volume_config *cfg, struct blockdev **stores, unsigned local_store,
		struct volume **out, char *err, size_t errlen);

/* The view for virtio-blk; its close() is volume_close(). */
struct blockdev *volume_blockdev(struct volume *vol);

/*
 * Flushes, clears the write intent, marks every live store clean, closes
 * the stores and frees the volume. No operation may be in flight.
 */
void volume_close(struct volume *vol);

/*
 * Gives a failed store back (the same device repaired, or a new one): an
 * all-zero store becomes a new member, a store of this volume is checked
 * and its stale chunks are found. Resync then runs in the background. The
 * volume owns bd on success (a previous blockdev of that store is closed);
 * on failure (-1, reason in err, nothing written) the caller keeps it.
 * Passing the failed store's own current blockdev retries it, as the
 * probe does (that one stays the volume's either way).
 */
int volume_replica_reattach(struct volume *vol, unsigned idx, struct blockdev *bd, char *err,
			    size_t errlen);

void volume_stats(struct volume *vol, struct volume_stats *st);

/*
 * Lets serving nodes read their own stores' copies under read leases
 * (blockdev/lease_coord.h, docs/volume.md "Read leases"): from now on lc
 * grants only leases on current copies, and the volume revokes them (and
 * waits for the holders) before a store fails, before a resync touches a
 * copy, and before a write that skips a copy completes. NULL detaches;
 * volume_close detaches too. lc must outlive the volume.
 */
struct lease_coord;
void volume_set_leases(struct volume *vol, struct lease_coord *lc);

#endif
