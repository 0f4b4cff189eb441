// SPDX-License-Identifier: MIT
/*
 * The cluster description in a domain's metadata:
 *
 *   <grappe:cluster xmlns:grappe="urn:grappe:cluster:1" transport="tcp"
 *                   secret="cluster.key">
 *     <grappe:node cell="0" address="127.0.0.1:7100" cache="256MiB"/>
 *     <grappe:node cell="1" address="127.0.0.1:7101" memory-max="384MiB"/>
 *   </grappe:cluster>
 *
 * Node ids are the order of the <grappe:node> elements. It lives in
 * <metadata> so that the same file stays a valid libvirt domain.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/cluster_xml.h"
#include "mgmt/metadata_xml.h"

/* host:port with a port in 1..65535; [v6]:port is accepted too. */
static bool address_ok(const char *a)
{
	const char *colon = strrchr(a, ':');
	char *end;
	long port;

	if (!colon || colon == a || strlen(a) >= sizeof(((struct vm_cluster_node *)0)->address))
		return false;
	port = strtol(colon + 1, &end, 10);
	return *end == '\0' && end != colon + 1 && port > 0 && port < 65536;
}

static int size_attr(struct meta_ctx *c, xmlNodePtr n, const char *name, uint64_t *out)
{
	xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
	int rc = 0;

	*out = 0;
	if (v && xml_parse_size((const char *)v, out))
		rc = meta_fail(c, n, "%s='%s' is not a size (e.g. 256MiB)", name, (const char *)v);
	xmlFree(v);
	return rc;
}

static int parse_node(struct meta_ctx *c, xmlNodePtr n, struct vm_cluster *out)
{
	struct vm_cluster_node *node;
	xmlChar *cell, *addr;
	char *end;
	long v;
	int rc = 0;

	if (out->nr_nodes == VM_MAX_NODES)
		return meta_fail(c, n, "more than %d <grappe:node> elements", VM_MAX_NODES);
	node = &out->nodes[out->nr_nodes];
	cell = xmlGetProp(n, (const xmlChar *)"cell");
	addr = xmlGetProp(n, (const xmlChar *)"address");
	if (!cell) {
		rc = meta_fail(c, n, "<grappe:node> needs a cell attribute");
		goto out;
	}
	v = strtol((const char *)cell, &end, 10);
	if (*end || end == (char *)cell || v < 0 || v >= VM_MAX_CELLS) {
		rc = meta_fail(c, n, "cell='%s' is not a cell number", (const char *)cell);
		goto out;
	}
	if (!addr || !address_ok((const char *)addr)) {
		rc = meta_fail(c, n, "<grappe:node> needs address='host:port', got '%s'",
			     addr ? (const char *)addr : "");
		goto out;
	}
	node->cell = (unsigned)v;
	snprintf(node->address, sizeof(node->address), "%s", (const char *)addr);
	if (size_attr(c, n, "cache", &node->cache_bytes) ||
	    size_attr(c, n, "memory-max", &node->memory_max)) {
		rc = -1;
		goto out;
	}
	for (unsigned i = 0; i < out->nr_nodes; i++) {
		if (out->nodes[i].cell == node->cell) {
			rc = meta_fail(c, n, "cell %u is given to two nodes", node->cell);
			goto out;
		}
		if (!strcmp(out->nodes[i].address, node->address)) {
			rc = meta_fail(c, n, "address %s is given to two nodes", node->address);
			goto out;
		}
	}
	out->nr_nodes++;
out:
	xmlFree(cell);
	xmlFree(addr);
	return rc;
}

static int parse_cluster_attrs(struct meta_ctx *c, xmlNodePtr n, const char *basedir,
			       struct vm_cluster *out)
{
	xmlChar *tr = xmlGetProp(n, (const xmlChar *)"transport");
	xmlChar *secret = xmlGetProp(n, (const xmlChar *)"secret");
	int rc = 0;

	snprintf(out->transport, sizeof(out->transport), "tcp");
	if (tr && strcmp((const char *)tr, "tcp") != 0)
		rc = meta_fail(c, n, "transport='%s' is not supported (tcp)", (const char *)tr);
	if (!rc && secret) {
		const char *s = (const char *)secret;

		if (!*s)
			rc = meta_fail(c, n, "secret='' names no file");
		else if (s[0] == '/' || !basedir)
			out->secret_path = strdup(s);
		else if (asprintf(&out->secret_path, "%s/%s", basedir, s) < 0)
			out->secret_path = NULL;
		if (!rc && !out->secret_path)
			rc = meta_fail(c, n, "out of memory");
	}
	xmlFree(tr);
	xmlFree(secret);
	return rc;
}

int cluster_xml_parse(xmlNodePtr metadata, const char *file, const char *basedir,
		      struct vm_cluster *out, char *err, size_t errlen)
{
	struct meta_ctx c = { .file = file, .err = err, .errlen = errlen };
	xmlNodePtr cl = NULL;

	for (xmlNodePtr n = metadata->children; n; n = n->next) {
		if (!meta_in_ns(n, "cluster"))
			continue;
		if (cl)
			return meta_fail(&c, n, "a second <grappe:cluster> (first on line %ld)",
				       xmlGetLineNo(cl));
		cl = n;
	}
	if (!cl)
		return 0;
	memset(out, 0, sizeof(*out));
	out->line = xmlGetLineNo(cl);
	if (parse_cluster_attrs(&c, cl, basedir, out))
		return -1;
	for (xmlNodePtr n = cl->children; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (!meta_in_ns(n, "node"))
			return meta_fail(&c, n, "unexpected <%s> in <grappe:cluster>", (const char *)n->name);
		if (parse_node(&c, n, out))
			return -1;
	}
	if (!out->nr_nodes)
		return meta_fail(&c, cl, "<grappe:cluster> lists no <grappe:node>");
	return 0;
}

void cluster_xml_free(struct vm_cluster *c)
{
	free(c->secret_path);
	c->secret_path = NULL;
}

int vm_cluster_check(const struct vm_config *cfg, char err[VM_CONFIG_ERR_LEN])
{
	const struct vm_cluster *c = &cfg->cluster;
	unsigned cells = cfg->nr_cells ? cfg->nr_cells : 1;

	if (!c->nr_nodes)
		return 0;
	for (unsigned i = 0; i < c->nr_nodes; i++) {
		if (c->nodes[i].cell >= cells) {
			snprintf(err, VM_CONFIG_ERR_LEN, "%s:%ld: node %u runs cell %u, but the "
				 "domain has %u cell(s)", cfg->source, c->line, i, c->nodes[i].cell, cells);
			return -1;
		}
	}
	if (c->nr_nodes != cells) {
		snprintf(err, VM_CONFIG_ERR_LEN, "%s:%ld: %u cell(s) but %u node(s): every cell "
			 "needs exactly one <grappe:node>", cfg->source, c->line, cells, c->nr_nodes);
		return -1;
	}
	return 0;
}

unsigned vm_cluster_node_of_cell(const struct vm_config *cfg, unsigned cell)
{
	for (unsigned i = 0; i < cfg->cluster.nr_nodes; i++)
		if (cfg->cluster.nodes[i].cell == cell)
			return i;
	return 0;
}
