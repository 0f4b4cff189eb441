// SPDX-License-Identifier: MIT
/*
 * <grappe:volume>: a replicated disk over one store per host, described in
 * the domain's <metadata> so that the file stays a libvirt domain; the
 * <disk type='volume'> that uses it is standard libvirt (docs/volume.md).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/volume_xml.h"
#include "mgmt/metadata_xml.h"

#define DEFAULT_CHUNK (1ULL << 20)
#define MIN_CHUNK (64ULL << 10)
#define MAX_CHUNK (64ULL << 20)

static bool name_ok(const char *s)
{
	size_t len = strlen(s);

	if (!len || len > VM_VOLUME_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return false;
	return true;
}

/* An unsigned attribute in [lo, hi]; absent leaves *out alone. */
static int uint_attr(struct meta_ctx *c, xmlNodePtr n, const char *name, unsigned lo, unsigned hi,
		     unsigned *out)
{
	xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
	char *end;
	long x;
	int rc = 0;

	if (!v)
		return 0;
	errno = 0;
	x = strtol((const char *)v, &end, 10);
	if (errno || *end || end == (char *)v || x < (long)lo || x > (long)hi)
		rc = meta_fail(c, n, "%s='%s' is not a number in %u..%u", name, (const char *)v, lo, hi);
	else
		*out = (unsigned)x;
	xmlFree(v);
	return rc;
}

static int size_attr(struct meta_ctx *c, xmlNodePtr n, const char *name, uint64_t *out)
{
	xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
	int rc = 0;

	if (v && xml_parse_size((const char *)v, out))
		rc = meta_fail(c, n, "%s='%s' is not a size (e.g. 4GiB)", name, (const char *)v);
	xmlFree(v);
	return rc;
}

static char *resolve_path(struct meta_ctx *c, const char *path)
{
	char *out;

	if (path[0] == '/' || !c->basedir)
		return strdup(path);
	if (asprintf(&out, "%s/%s", c->basedir, path) < 0)
		return NULL;
	return out;
}

static int parse_store(struct meta_ctx *c, xmlNodePtr n, struct vm_volume *v)
{
	struct vm_volume_store *s;
	xmlChar *path;
	int rc = 0;

	if (v->nr_stores == VM_MAX_STORES)
		return meta_fail(c, n, "volume '%s' has more than %d stores", v->name, VM_MAX_STORES);
	s = &v->stores[v->nr_stores];
	memset(s, 0, sizeof(*s));
	s->line = xmlGetLineNo(n);
	if (uint_attr(c, n, "node", 0, VM_MAX_NODES - 1, &s->node))
		return -1;
	path = xmlGetProp(n, (const xmlChar *)"path");
	if (!path || !*path)
		rc = meta_fail(c, n, "<grappe:store> needs path='FILE or DEVICE'");
	else if (!(s->path = resolve_path(c, (const char *)path)))
		rc = meta_fail(c, n, "out of memory");
	xmlFree(path);
	if (rc)
		return rc;
	v->nr_stores++;
	for (unsigned i = 0; i + 1 < v->nr_stores; i++)
		if (!strcmp(v->stores[i].path, s->path) && v->stores[i].node == s->node)
			return meta_fail(c, n, "store %s on node %u is listed twice (first on line %ld)",
				       s->path, s->node, v->stores[i].line);
	return 0;
}

static int volume_attrs(struct meta_ctx *c, xmlNodePtr n, struct vm_config *cfg, struct vm_volume *v)
{
	xmlChar *name = xmlGetProp(n, (const xmlChar *)"name");
	int rc = 0;

	if (!name || !name_ok((const char *)name))
		rc = meta_fail(c, n, "<grappe:volume> needs name= of 1 to %d characters a-z 0-9 - _, "
			     "got '%s'", VM_VOLUME_NAME_MAX, name ? (const char *)name : "");
	else
		snprintf(v->name, sizeof(v->name), "%s", (const char *)name);
	xmlFree(name);
	if (rc)
		return rc;
	for (unsigned i = 0; i < cfg->nr_volumes; i++)
		if (&cfg->volumes[i] != v && !strcmp(cfg->volumes[i].name, v->name))
			return meta_fail(c, n, "volume '%s' is defined twice (first on line %ld)",
				       v->name, cfg->volumes[i].line);
	v->chunk = DEFAULT_CHUNK;
	if (size_attr(c, n, "size", &v->size) || size_attr(c, n, "chunk", &v->chunk) ||
	    uint_attr(c, n, "replicas", 1, VM_MAX_STORES, &v->replicas))
		return -1;
	if (!v->size || v->size % 4096)
		return meta_fail(c, n, "volume '%s' needs size= a non-zero multiple of 4 KiB", v->name);
	if (v->chunk < MIN_CHUNK || v->chunk > MAX_CHUNK || (v->chunk & (v->chunk - 1)))
		return meta_fail(c, n, "volume '%s': chunk= must be a power of two from 64KiB "
			       "to 64MiB", v->name);
	return 0;
}

static int parse_volume(struct meta_ctx *c, xmlNodePtr n, struct vm_config *cfg)
{
	struct vm_volume *v;

	if (cfg->nr_volumes == VM_MAX_VOLUMES)
		return meta_fail(c, n, "more than %d <grappe:volume> elements", VM_MAX_VOLUMES);
	v = &cfg->volumes[cfg->nr_volumes++];
	memset(v, 0, sizeof(*v));
	v->line = xmlGetLineNo(n);
	if (volume_attrs(c, n, cfg, v))
		return -1;
	for (xmlNodePtr s = n->children; s; s = s->next) {
		if (s->type != XML_ELEMENT_NODE)
			continue;
		if (!meta_in_ns(s, "store"))
			return meta_fail(c, s, "unexpected <%s> in <grappe:volume>", (const char *)s->name);
		if (parse_store(c, s, v))
			return -1;
	}
	if (!v->nr_stores)
		return meta_fail(c, n, "volume '%s' lists no <grappe:store>", v->name);
	if (!v->replicas)
		v->replicas = v->nr_stores < 2 ? 1 : 2;
	if (v->replicas > v->nr_stores)
		return meta_fail(c, n, "volume '%s': replicas=%u but only %u store(s)", v->name,
			       v->replicas, v->nr_stores);
	return 0;
}

int volume_xml_parse(xmlNodePtr metadata, const char *file, const char *basedir,
		     struct vm_config *cfg, char *err, size_t errlen)
{
	struct meta_ctx c = { .file = file, .basedir = basedir, .err = err, .errlen = errlen };

	for (xmlNodePtr n = metadata->children; n; n = n->next)
		if (meta_in_ns(n, "volume") && parse_volume(&c, n, cfg))
			return -1;
	return 0;
}

void volume_xml_free(struct vm_config *cfg)
{
	for (unsigned i = 0; i < cfg->nr_volumes; i++)
		for (unsigned s = 0; s < cfg->volumes[i].nr_stores; s++) {
			free(cfg->volumes[i].stores[s].path);
			cfg->volumes[i].stores[s].path = NULL;
		}
}

const struct vm_volume *vm_config_volume(const struct vm_config *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg->nr_volumes; i++)
		if (!strcmp(cfg->volumes[i].name, name))
			return &cfg->volumes[i];
	return NULL;
}

int vm_volumes_check(const struct vm_config *cfg, char err[VM_CONFIG_ERR_LEN])
{
	unsigned nodes = cfg->cluster.nr_nodes ? cfg->cluster.nr_nodes : 1;

	for (unsigned i = 0; i < cfg->nr_volumes; i++) {
		const struct vm_volume *v = &cfg->volumes[i];

		for (unsigned s = 0; s < v->nr_stores; s++)
			if (v->stores[s].node >= nodes) {
				snprintf(err, VM_CONFIG_ERR_LEN, "%s:%ld: store on node %u, but the "
					 "cluster has %u node(s)", cfg->source, v->stores[s].line,
					 v->stores[s].node, nodes);
				return -1;
			}
	}
	for (unsigned i = 0; i < cfg->nr_disks; i++) {
		const struct vm_disk *d = &cfg->disks[i];

		if (d->type != VM_DISK_VOLUME)
			continue;
		if (!vm_config_volume(cfg, d->volume)) {
			snprintf(err, VM_CONFIG_ERR_LEN, "%s:%ld: disk %s: no <grappe:volume "
				 "name='%s'> in <metadata>", cfg->source, d->line, d->target, d->volume);
			return -1;
		}
		for (unsigned j = 0; j < i; j++)
			if (cfg->disks[j].type == VM_DISK_VOLUME &&
			    !strcmp(cfg->disks[j].volume, d->volume)) {
				snprintf(err, VM_CONFIG_ERR_LEN, "%s:%ld: volume '%s' is already "
					 "disk %s (line %ld)", cfg->source, d->line, d->volume,
					 cfg->disks[j].target, cfg->disks[j].line);
				return -1;
			}
	}
	return 0;
}
