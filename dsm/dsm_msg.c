// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>

#include "dsm/dsm_msg.h"

static const char *const names[DSM_MSG_TYPE_END] = {
	[DSM_GET_S] = "GET_S",         [DSM_GET_M] = "GET_M",
	[DSM_UPGRADE] = "UPGRADE",     [DSM_PUT_M] = "PUT_M",
	[DSM_INV] = "INV",             [DSM_FWD_GET_S] = "FWD_GET_S",
	[DSM_FWD_GET_M] = "FWD_GET_M", [DSM_INV_ACK] = "INV_ACK",
	[DSM_FWD_DATA] = "FWD_DATA",   [DSM_DATA] = "DATA",
	[DSM_DATA_ZERO] = "DATA_ZERO", [DSM_UPG_ACK] = "UPG_ACK",
	[DSM_PUT_ACK] = "PUT_ACK",
};

const char *dsm_msg_type_name(unsigned type)
{
	return type && type < DSM_MSG_TYPE_END ? names[type] : "?";
}

/* Which flags each type may carry: anything else is refused. */
static uint8_t allowed_flags(unsigned type)
{
	switch (type) {
	case DSM_PUT_M:
	case DSM_FWD_DATA:
		return DSM_MSG_F_ZERO;
	case DSM_DATA:
	case DSM_DATA_ZERO:
		return DSM_MSG_F_GRANT_M;
	default:
		return 0;
	}
}

bool dsm_msg_has_page(const struct dsm_msg *m)
{
	switch (m->type) {
	case DSM_DATA:
		return true;
	case DSM_PUT_M:
	case DSM_FWD_DATA:
		return !(m->flags & DSM_MSG_F_ZERO);
	default:
		return false;
	}
}

int dsm_msg_check(const struct dsm_msg *m, const char **why)
{
	const char *w = NULL;

	if (!m->type || m->type >= DSM_MSG_TYPE_END)
		w = "unknown type";
	else if (m->flags & ~allowed_flags(m->type))
		w = "flags not allowed for this type";
	else if (m->page > DSM_MSG_MAX_PAGE)
		w = "page index out of range";
	if (why)
		*why = w;
	return w ? -EINVAL : 0;
}

static void put_le(uint8_t *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

int dsm_msg_encode(const struct dsm_msg *m, uint8_t *buf, size_t cap)
{
	if (cap < DSM_MSG_HDR_LEN || dsm_msg_check(m, NULL))
		return -EINVAL;
	memset(buf, 0, DSM_MSG_HDR_LEN);
	buf[0] = DSM_MSG_VERSION;
	buf[1] = m->type;
	buf[2] = m->flags;
	put_le(buf + 8, m->page, 8);
	return DSM_MSG_HDR_LEN;
}

static int refuse(const char **why, const char *w)
{
	if (why)
		*why = w;
	return -EINVAL;
}

int dsm_msg_decode(const uint8_t *buf, size_t len, struct dsm_msg *m, const uint8_t **page,
		   const char **why)
{
	size_t want;

	*page = NULL;
	if (len < DSM_MSG_HDR_LEN)
		return refuse(why, "truncated header");
	if (buf[0] != DSM_MSG_VERSION)
		return refuse(why, "unknown version");
	if (buf[3] || get_le(buf + 4, 4))
		return refuse(why, "reserved bytes set");
	memset(m, 0, sizeof(*m));
	m->type = buf[1];
	m->flags = buf[2];
	m->page = get_le(buf + 8, 8);
	if (dsm_msg_check(m, why))
		return -EINVAL;
	want = DSM_MSG_HDR_LEN + (dsm_msg_has_page(m) ? DSM_PAGE_SIZE : 0);
	if (len < want)
		return refuse(why, "truncated page");
	if (len > want)
		return refuse(why, "trailing bytes");
	if (want > DSM_MSG_HDR_LEN)
		*page = buf + DSM_MSG_HDR_LEN;
	if (why)
		*why = NULL;
	return 0;
}
