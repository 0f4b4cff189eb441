/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_CLUSTER_XML_H
#define GRAPPE_CLUSTER_XML_H

#include <stddef.h>
#include <libxml/tree.h>

#include "vmm/vm_config.h"

/*
 * Reads <grappe:cluster> (namespace VM_CLUSTER_NS) from a domain's
 * <metadata> element into out. Other namespaces in <metadata> belong to
 * other tools and are left alone. 'file' names the XML in messages and
 * 'basedir' resolves a relative secret path. Returns 0 (also when there is
 * no cluster element), or -1 with "FILE:LINE: ..." in err.
 */
int cluster_xml_parse(xmlNodePtr metadata, const char *file, const char *basedir,
		      struct vm_cluster *out, char *err, size_t errlen);
void cluster_xml_free(struct vm_cluster *c);

#endif
