/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_METADATA_XML_H
#define GRAPPE_METADATA_XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libxml/tree.h>

/*
 * What the readers of grappe's own elements in a domain's <metadata>
 * (namespace VM_CLUSTER_NS: <grappe:cluster>, <grappe:volume>) share.
 */
struct meta_ctx {
	const char *file;        /* the XML, for messages */
	const char *basedir;     /* resolves relative paths; may be NULL */
	char *err;
	size_t errlen;
};

/* Formats "FILE:LINE: message" into ctx->err; returns -1. */
int meta_fail(struct meta_ctx *c, xmlNodePtr n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* n is the element <grappe:NAME>. */
bool meta_in_ns(xmlNodePtr n, const char *name);

/*
 * Sizes: "256MiB", "1G", "4096" (bytes). Units are binary and
 * case-insensitive. Returns 0, or -1 for anything else (negative,
 * overflow, unknown unit).
 */
int xml_parse_size(const char *s, uint64_t *out);

#endif
