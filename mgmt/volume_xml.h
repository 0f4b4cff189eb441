/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VOLUME_XML_H
#define GRAPPE_VOLUME_XML_H

#include <stddef.h>
#include <libxml/tree.h>

#include "vmm/vm_config.h"

/*
 * Reads every <grappe:volume> (namespace VM_CLUSTER_NS) directly under a
 * domain's <metadata> into cfg->volumes:
 *
 *   <grappe:volume name="data" size="4GiB" chunk="1MiB" replicas="2">
 *     <grappe:store node="0" path="/var/lib/grappe/data-0.img"/>
 *     <grappe:store node="1" path="/dev/vdb"/>
 *   </grappe:volume>
 *
 * 'basedir' resolves relative store paths. Returns 0, or -1 with
 * "FILE:LINE: ..." in err. Cross-references (store nodes against the
 * cluster, disks naming volumes) are checked by vm_volumes_check once the
 * whole domain is read.
 */
int volume_xml_parse(xmlNodePtr metadata, const char *file, const char *basedir,
		     struct vm_config *cfg, char *err, size_t errlen);
void volume_xml_free(struct vm_config *cfg);

#endif
