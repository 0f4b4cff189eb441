/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_LEASE_READER_H
#define GRAPPE_LEASE_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockdev/blockdev.h"
#include "blockdev/lease_msg.h"
#include "blockdev/store_msg.h"

/*
 * A replicated volume as a serving node sees it (docs/volume.md, "Read
 * leases"): a struct blockdev whose writes, flushes, discards and zeroes
 * go to the volume on the I/O node (`remote`, a store_client blockdev on
 * disk/TARGET), and whose reads of a chunk go to this node's own store
 * when the coordinator has leased that copy to this node, to `remote`
 * otherwise (and a lease is asked for in the background).
 *
 * Frames can arrive until the fabric is gone, which may be before or after
 * the disk is closed: the blockdev's close() closes `remote`, and the
 * reader is freed when both it and lease_reader_destroy() (called once no
 * frame can be delivered) have been called, in either order.
 */
struct lease_reader;

struct lease_reader_config {
	uint32_t volume;                  /* the coordinator's id for it */
	/* The volume's geometry, as volume_config has it (0 = default chunk, replicas). */
	uint64_t size, chunk_size;
	unsigned stores, replicas;
	unsigned region_chunks;           /* as the coordinator's; 0 = LEASE_REGION_CHUNKS */
	/* This node's stores of the volume (borrowed), NULL for the others'. */
	struct blockdev *local[LEASE_MAX_STORES];
	struct blockdev *remote;          /* owned: closed by the blockdev's close() */
	unsigned coordinator;             /* the I/O node */
	store_send_fn send;
	store_log_fn log;
	void *ctx;
};

struct lease_reader_stats {
	uint64_t reads_local, bytes_local;         /* served from this node's copy */
	uint64_t reads_forwarded, bytes_forwarded; /* (pieces) sent to the I/O node */
	uint64_t local_errors;                     /* local reads that failed, then forwarded */
	uint64_t late_reads;                       /* local reads a revocation overtook, reread */
	uint64_t granted, refused, revoked;        /* lease messages received */
	uint64_t stale_grants;                     /* grants that came after their revocation */
	uint64_t leases;                           /* held now */
};

/* On failure the caller keeps cfg->remote. */
int lease_reader_create(const struct lease_reader_config *cfg, struct lease_reader **out,
			char *err, size_t errlen);
struct blockdev *lease_reader_blockdev(struct lease_reader *lr);
/* A GRANT or a REVOKE from the coordinator, on the fabric thread. */
void lease_reader_receive(struct lease_reader *lr, unsigned src, uint16_t type,
			  const void *payload, size_t len);
/* The coordinator's node died: every lease is dropped. */
void lease_reader_peer_down(struct lease_reader *lr, unsigned node);
void lease_reader_stats(struct lease_reader *lr, struct lease_reader_stats *st);
/* Once no frame can be delivered (the fabric is gone); the blockdev may still be open. */
void lease_reader_destroy(struct lease_reader *lr);

#endif
