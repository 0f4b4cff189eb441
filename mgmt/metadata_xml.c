// SPDX-License-Identifier: MIT
/* Shared by the readers of grappe's elements in <metadata>: see metadata_xml.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <strings.h>

#include "mgmt/metadata_xml.h"
#include "vmm/vm_config.h"

int meta_fail(struct meta_ctx *c, xmlNodePtr n, const char *fmt, ...)
{
	char msg[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(c->err, c->errlen, "%s:%ld: %s", c->file, n ? xmlGetLineNo(n) : 0L, msg);
	return -1;
}

bool meta_in_ns(xmlNodePtr n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
	       !strcmp((const char *)n->ns->href, VM_CLUSTER_NS) &&
	       !strcmp((const char *)n->name, name);
}

int xml_parse_size(const char *s, uint64_t *out)
{
	static const struct { const char *u; uint64_t m; } units[] = {
		{ "", 1 }, { "b", 1 }, { "k", 1ULL << 10 }, { "kib", 1ULL << 10 },
		{ "m", 1ULL << 20 }, { "mib", 1ULL << 20 }, { "g", 1ULL << 30 },
		{ "gib", 1ULL << 30 }, { "t", 1ULL << 40 }, { "tib", 1ULL << 40 },
	};
	char *end;
	unsigned long long v;

	if (!s || !*s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (!strcasecmp(end, units[i].u)) {
			if (v > UINT64_MAX / units[i].m)
				return -1;
			*out = v * units[i].m;
			return 0;
		}
	}
	return -1;
}
