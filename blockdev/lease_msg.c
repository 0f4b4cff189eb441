// SPDX-License-Identifier: MIT
/* Read-lease messages: see lease_msg.h and docs/store-protocol.md. */
#include <string.h>

#include "blockdev/lease_msg.h"
#include "blockdev/store_msg.h"

_Static_assert((int)LEASE_MSG_REQUEST > (int)STORE_MSG_REQ_END && (int)LEASE_MSG_END < (int)STORE_MSG_REPLY,
	       "lease types must sit in the store's reserved range");

bool lease_msg_owns_type(uint16_t type)
{
	return type >= LEASE_MSG_REQUEST && type < LEASE_MSG_END;
}

bool lease_msg_to_coordinator(uint16_t type)
{
	return type == LEASE_MSG_REQUEST || type == LEASE_MSG_ACK;
}

const char *lease_msg_type_name(uint16_t type)
{
	static const char *const names[] = { "LEASE_REQUEST", "LEASE_GRANT", "LEASE_REVOKE",
					     "LEASE_ACK" };

	return lease_msg_owns_type(type) ? names[type - LEASE_MSG_REQUEST] : "unknown";
}

static void put(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get(const uint8_t *p, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The rules both directions share: what a message of its type may hold. */
static const char *check(const struct lease_msg *m)
{
	if (!lease_msg_owns_type(m->type))
		return "not a lease message type";
	if (m->store >= LEASE_MAX_STORES)
		return "store index out of range";
	if (m->region > LEASE_MAX_REGION &&
	    !((m->type == LEASE_MSG_REVOKE || m->type == LEASE_MSG_ACK) &&
	      m->region == LEASE_ALL_REGIONS))
		return "region out of range";
	if (m->type == LEASE_MSG_GRANT ? m->status > LEASE_REFUSED : m->status != 0)
		return "bad status";
	if (m->type == LEASE_MSG_REQUEST ? m->seq != 0 : m->seq == 0)
		return m->seq ? "sequence in a request" : "sequence 0";
	return NULL;
}

int lease_msg_encode(const struct lease_msg *m, uint8_t out[LEASE_MSG_LEN], const char **why)
{
	*why = check(m);
	if (*why)
		return -1;
	memset(out, 0, LEASE_MSG_LEN);
	out[0] = LEASE_MSG_VERSION;
	out[1] = m->status;
	put(out + 4, m->volume, 4);
	put(out + 8, m->store, 4);
	put(out + 16, m->region, 8);
	put(out + 24, m->seq, 8);
	return 0;
}

int lease_msg_decode(uint16_t type, const void *buf, size_t len, struct lease_msg *m,
		     const char **why)
{
	const uint8_t *p = buf;

	*why = NULL;
	if (!lease_msg_owns_type(type))
		*why = "not a lease message type";
	else if (len != LEASE_MSG_LEN)
		*why = len < LEASE_MSG_LEN ? "truncated" : "trailing bytes";
	else if (p[0] != LEASE_MSG_VERSION)
		*why = "unknown version";
	else if (get(p + 2, 2) || get(p + 12, 4))
		*why = "reserved field set";
	if (*why)
		return -1;
	*m = (struct lease_msg){
		.type = type, .status = p[1], .volume = (uint32_t)get(p + 4, 4),
		.store = (uint32_t)get(p + 8, 4), .region = get(p + 16, 8), .seq = get(p + 24, 8),
	};
	*why = check(m);
	return *why ? -1 : 0;
}
