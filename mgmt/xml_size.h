/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_XML_SIZE_H
#define GRAPPE_XML_SIZE_H

#include <stdint.h>

/*
 * Sizes in grappe's metadata: "256MiB", "1G", "4096" (bytes). Units are
 * binary and case-insensitive. Returns 0, or -1 for anything else
 * (negative, overflow, unknown unit).
 */
int xml_parse_size(const char *s, uint64_t *out);

#endif
