/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_LEASE_MSG_H
#define GRAPPE_LEASE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Read leases of a replicated volume (docs/volume.md, "Read leases"): a
 * serving node asks the volume's coordinator (the volume on the I/O node)
 * whether its own store's copies of a chunk region are current; the
 * coordinator grants, refuses, and revokes; the serving node acknowledges
 * a revocation once its reads in flight on the region are done.
 *
 * Four fabric types of the store's range (0x300..0x3ff), one fixed
 * 32-byte little-endian body each, fabric req_id 0:
 *
 *   0  version (1)     1  status (GRANT: 0 granted, 1 refused; else 0)
 *   2  reserved u16    4  volume u32     8  store u32 (< 64)
 *   12 reserved u32    16 region u64     24 seq u64
 *
 * region is a chunk region index (< 2^40), or LEASE_ALL_REGIONS in a
 * REVOKE (every region of the store) and in its ACK. seq is 0 in a REQUEST and >= 1
 * otherwise: the coordinator numbers its GRANTs and REVOKEs from one
 * counter, so a serving node ignores a GRANT numbered below a REVOKE of
 * the same lease it has already seen (they may arrive in either order); an
 * ACK repeats its REVOKE's. Decoding refuses anything else.
 */
#define LEASE_MSG_VERSION 1
#define LEASE_MSG_LEN 32
#define LEASE_MAX_STORES 64
#define LEASE_MAX_REGION ((1ull << 40) - 1)
#define LEASE_ALL_REGIONS UINT64_MAX

enum lease_msg_type {
	LEASE_MSG_REQUEST = 0x310,   /* serving node -> coordinator */
	LEASE_MSG_GRANT,             /* coordinator -> serving node: granted or refused */
	LEASE_MSG_REVOKE,            /* coordinator -> serving node */
	LEASE_MSG_ACK,               /* serving node -> coordinator: revocation done */
	LEASE_MSG_END,
};

enum lease_status {
	LEASE_GRANTED = 0,
	LEASE_REFUSED = 1,
};

struct lease_msg {
	uint16_t type;               /* enum lease_msg_type */
	uint8_t status;              /* GRANT only */
	uint32_t volume;
	uint32_t store;
	uint64_t region;
	uint64_t seq;
};

bool lease_msg_owns_type(uint16_t type);
/* Coordinator-bound (REQUEST, ACK) rather than serving-node-bound (GRANT, REVOKE). */
bool lease_msg_to_coordinator(uint16_t type);
const char *lease_msg_type_name(uint16_t type);

/* Writes LEASE_MSG_LEN bytes; -1 (why set) if m is not a valid message. */
int lease_msg_encode(const struct lease_msg *m, uint8_t out[LEASE_MSG_LEN], const char **why);
/* 0, or -1 with the reason: a malformed message is never acted on. */
int lease_msg_decode(uint16_t type, const void *buf, size_t len, struct lease_msg *m,
		     const char **why);

#endif
