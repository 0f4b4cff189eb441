/* SPDX-License-Identifier: MIT */
/*
 * Loader for the part of the libvirt domain XML format that grappe
 * understands (https://libvirt.org/formatdomain.html).
 *
 * The file is untrusted input: it may come from a user, from virsh through
 * virtgrapped, or from a fuzzer. So the parser never touches the network,
 * never expands entities, refuses any DOCTYPE (the only way to declare an
 * entity, hence the only door to "billion laughs" and external entities) and
 * refuses inputs above VM_CONFIG_MAX_XML. libxml2 reports its errors to a
 * handler installed for the duration of one parse, so nothing is printed and
 * every message comes back to the caller with the file and line.
 */
#include "vmm/vm_config.h"
#include "mgmt/cluster_xml.h"
#include "mgmt/volume_xml.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/SAX2.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

static_assert(VM_MAX_VCPUS <= 64, "vCPU sets are 64-bit masks");

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* x86-64 physical addresses have at most 52 bits; 16 cells can't overflow. */
#define MEM_MAX ((uint64_t)1 << 52)
/* Guest RAM is handed out by the DSM in pages. */
#define MEM_ALIGN 4096u
#define DIST_LOCAL 10u
#define DIST_REMOTE 20u
#define DIST_MAX 254u		/* 255 means "unreachable" in ACPI SLIT */
/* Distinct unsupported element names reported before going quiet. */
#define MAX_WARNED 64
#define MAX_HANDLERS 16
#define QUOTE "%.64s"		/* user text quoted in messages */

/* What the loader remembers about a cell beyond struct vm_cell. */
struct cell_aux {
	xmlNodePtr node;
	uint64_t raw_mem;		/* as written, before rounding */
	uint64_t vcpus;			/* mask */
	xmlNodePtr sibling[VM_MAX_CELLS];
};

struct parser {
	const char *name;		/* for messages */
	const char *base_dir;		/* NULL: keep relative paths */
	char *err;
	bool failed;
	void (*warn)(void *ctx, const char *msg);
	void *warn_ctx;
	struct vm_config *cfg;

	xmlNodePtr warned[MAX_WARNED];
	unsigned nr_warned;

	xmlNodePtr root, memory, cur_memory, vcpu, numa;
	uint64_t raw_mem, raw_cur_mem;
	struct cell_aux cells[VM_MAX_CELLS];
	xmlNodePtr serial, console;
	struct vm_disk *disk;		/* [issue #4: disks] the <disk> being read */
};

/* ---- messages ---- */

/*
 * A message is one line: libxml2 spreads some over two, and quoted values
 * may hold anything.
 */
static void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

static void vfail_line(struct parser *p, long line, const char *fmt,
		       va_list ap)
{
	size_t n;

	/* The first error is the one worth reading: the rest follow from it. */
	if (p->failed)
		return;
	p->failed = true;
	if (line > 0)
		snprintf(p->err, VM_CONFIG_ERR_LEN, "%s:%ld: ", p->name, line);
	else
		snprintf(p->err, VM_CONFIG_ERR_LEN, "%s: ", p->name);
	n = strlen(p->err);
	vsnprintf(p->err + n, VM_CONFIG_ERR_LEN - n, fmt, ap);
	one_line(p->err);
}

__attribute__((format(printf, 3, 4)))
static int fail_line(struct parser *p, long line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail_line(p, line, fmt, ap);
	va_end(ap);
	return -1;
}

__attribute__((format(printf, 3, 4)))
static int fail(struct parser *p, xmlNodePtr n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail_line(p, n ? xmlGetLineNo(n) : 0, fmt, ap);
	va_end(ap);
	return -1;
}

static int fail_oom(struct parser *p)
{
	return fail_line(p, 0, "out of memory");
}

__attribute__((format(printf, 3, 4)))
static void warn_line(struct parser *p, long line, const char *fmt, ...)
{
	char msg[VM_CONFIG_ERR_LEN];
	size_t n;
	va_list ap;

	if (!p->warn)
		return;
	if (line > 0)
		snprintf(msg, sizeof(msg), "%s:%ld: warning: ", p->name, line);
	else
		snprintf(msg, sizeof(msg), "%s: warning: ", p->name);
	n = strlen(msg);
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	va_end(ap);
	one_line(msg);
	p->warn(p->warn_ctx, msg);
}

static void elem_name(xmlNodePtr n, char *buf, size_t len)
{
	if (n->ns && n->ns->prefix)
		snprintf(buf, len, "%.60s:%.60s", (const char *)n->ns->prefix,
			 (const char *)n->name);
	else
		snprintf(buf, len, "%.60s", (const char *)n->name);
}

static bool same_element(xmlNodePtr a, xmlNodePtr b)
{
	if (!xmlStrEqual(a->name, b->name))
		return false;
	if (!a->ns || !b->ns)
		return a->ns == b->ns;
	return xmlStrEqual(a->ns->href, b->ns->href);
}

/* One warning per element name: a VM with 20 disks needs one line, not 20. */
static void unsupported(struct parser *p, xmlNodePtr n)
{
	char what[128];
	unsigned i;

	for (i = 0; i < p->nr_warned; i++)
		if (same_element(p->warned[i], n))
			return;
	if (p->nr_warned == MAX_WARNED)
		return;
	p->warned[p->nr_warned++] = n;
	elem_name(n, what, sizeof(what));
	warn_line(p, xmlGetLineNo(n), "<%s> is not supported yet, ignored",
		  what);
}

/* ---- small readers ---- */

static bool is(xmlNodePtr n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && !n->ns &&
	       xmlStrEqual(n->name, (const xmlChar *)name);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Pretty-printed XML puts newlines around text; values never mean them. */
static char *trim_dup(const xmlChar *s)
{
	const char *b = (const char *)s, *e;

	if (!b)
		return strdup("");
	while (is_blank(*b))
		b++;
	e = b + strlen(b);
	while (e > b && is_blank(e[-1]))
		e--;
	return strndup(b, e - b);
}

static int text_of(struct parser *p, xmlNodePtr n, char **out)
{
	xmlChar *s = xmlNodeGetContent(n);

	*out = trim_dup(s);
	xmlFree(s);
	return *out ? 0 : fail_oom(p);
}

/* An absent attribute gives *out = NULL and success. */
static int attr_of(struct parser *p, xmlNodePtr n, const char *name,
		   char **out)
{
	xmlChar *s = xmlGetNoNsProp(n, (const xmlChar *)name);

	*out = NULL;
	if (!s)
		return 0;
	*out = trim_dup(s);
	xmlFree(s);
	return *out ? 0 : fail_oom(p);
}

static bool parse_u64(const char *s, uint64_t *v)
{
	uint64_t r = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (d > 9 || r > (UINT64_MAX - d) / 10)
			return false;
		r = r * 10 + d;
	}
	*v = r;
	return true;
}

static bool parse_uint(const char *s, unsigned max, unsigned *v)
{
	uint64_t r;

	if (!parse_u64(s, &r) || r > max)
		return false;
	*v = (unsigned)r;
	return true;
}

/* ---- memory sizes ---- */

/*
 * libvirt's scaling rules (virScaleInteger): "b"/"bytes" are bytes, a
 * letter alone or with "iB" is a power of 1024, with "B" a power of 1000,
 * case ignored. No unit means KiB.
 */
static bool unit_scale(const char *u, uint64_t *scale)
{
	static const char prefixes[] = "kmgtpe";
	const char *at;
	uint64_t base, s = 1;

	if (!u || !*u) {
		*scale = 1024;
		return true;
	}
	if (!strcasecmp(u, "b") || !strcasecmp(u, "byte") ||
	    !strcasecmp(u, "bytes")) {
		*scale = 1;
		return true;
	}
	if (!u[1] || !strcasecmp(u + 1, "iB"))
		base = 1024;
	else if ((u[1] == 'b' || u[1] == 'B') && !u[2])
		base = 1000;
	else
		return false;
	at = strchr(prefixes, u[0] | 0x20);
	if (!at || !*at)
		return false;
	for (long i = 0; i <= at - prefixes; i++)
		s *= base;
	*scale = s;
	return true;
}

static int parse_mem(struct parser *p, xmlNodePtr n, const char *what,
		     const char *value, const char *unit, uint64_t *out)
{
	uint64_t v, scale;

	if (!unit_scale(unit, &scale))
		return fail(p, n, "%s has an unknown unit '" QUOTE "'", what,
			    unit);
	if (!parse_u64(value, &v) || v == 0)
		return fail(p, n, "%s must be a positive integer, got '"
			    QUOTE "'", what, value);
	if (v > MEM_MAX / scale)
		return fail(p, n, "%s is too large (at most %llu bytes)",
			    what, (unsigned long long)MEM_MAX);
	*out = v * scale;
	return 0;
}

/* A memory-sized element: the value is its text, the unit an attribute. */
static int mem_element(struct parser *p, xmlNodePtr n, uint64_t *out)
{
	char *value = NULL, *unit = NULL, what[80];
	int rc;

	snprintf(what, sizeof(what), "<%s>", (const char *)n->name);
	rc = text_of(p, n, &value);
	if (!rc)
		rc = attr_of(p, n, "unit", &unit);
	if (!rc)
		rc = parse_mem(p, n, what, value, unit, out);
	free(value);
	free(unit);
	return rc;
}

static uint64_t mem_round(uint64_t v)
{
	return (v + MEM_ALIGN - 1) / MEM_ALIGN * MEM_ALIGN;
}

/* ---- walking children ---- */

typedef int (*handler_fn)(struct parser *p, xmlNodePtr n);

struct handler {
	const char *name;
	handler_fn fn;		/* NULL: accepted and ignored */
	bool repeatable;
};

static int find_handler(const struct handler *h, size_t nr, xmlNodePtr n)
{
	for (size_t i = 0; i < nr; i++)
		if (is(n, h[i].name))
			return (int)i;
	return -1;
}

/*
 * Runs the handler of each child element; unknown children are warned about
 * and skipped, a second copy of a single element is an error rather than a
 * silent choice between the two.
 */
static int walk(struct parser *p, xmlNodePtr parent, const struct handler *h,
		size_t nr)
{
	xmlNodePtr seen[MAX_HANDLERS] = { 0 };
	xmlNodePtr c;

	assert(nr <= MAX_HANDLERS);
	for (c = parent->children; c; c = c->next) {
		int i;

		if (c->type != XML_ELEMENT_NODE)
			continue;
		i = find_handler(h, nr, c);
		if (i < 0) {
			unsupported(p, c);
			continue;
		}
		if (seen[i] && !h[i].repeatable)
			return fail(p, c, "<%s> appears twice (first on line "
				    "%ld)", h[i].name, xmlGetLineNo(seen[i]));
		seen[i] = c;
		if (h[i].fn && h[i].fn(p, c))
			return -1;
	}
	return 0;
}

/* ---- top-level scalars ---- */

static int parse_name(struct parser *p, xmlNodePtr n)
{
	char *name;

	if (text_of(p, n, &name))
		return -1;
	p->cfg->name = name;
	if (!*name)
		return fail(p, n, "<name> is empty");
	for (const char *c = name; *c; c++)
		if (*c == '/' || (unsigned char)*c < 0x20)
			return fail(p, n, "<name> must not contain '/' or "
				    "control characters, got '" QUOTE "'",
				    name);
	return 0;
}

static int parse_memory(struct parser *p, xmlNodePtr n)
{
	p->memory = n;
	return mem_element(p, n, &p->raw_mem);
}

static int parse_current_memory(struct parser *p, xmlNodePtr n)
{
	p->cur_memory = n;
	return mem_element(p, n, &p->raw_cur_mem);
}

/* Ballooning is not there yet: the guest always gets <memory>. */
static void check_current_memory(struct parser *p)
{
	if (p->cur_memory && p->raw_cur_mem != p->cfg->mem_bytes)
		warn_line(p, xmlGetLineNo(p->cur_memory), "<currentMemory> "
			  "(%llu bytes) differs from <memory> (%llu bytes), "
			  "the guest gets <memory>",
			  (unsigned long long)p->raw_cur_mem,
			  (unsigned long long)p->cfg->mem_bytes);
}

/* placement= and current= are tolerated: no pinning, no vCPU hotplug. */
static int parse_vcpu(struct parser *p, xmlNodePtr n)
{
	char *s;
	unsigned v;
	int rc = 0;

	if (text_of(p, n, &s))
		return -1;
	if (!parse_uint(s, VM_MAX_VCPUS, &v) || v < 1)
		rc = fail(p, n, "<vcpu> must be an integer between 1 and %d, "
			  "got '" QUOTE "'", VM_MAX_VCPUS, s);
	else
		p->cfg->nr_vcpus = v;
	p->vcpu = n;
	free(s);
	return rc;
}

static const struct {
	const char *name;
	enum vm_action action;
	bool crash_only;
} actions[] = {
	{ "destroy", VM_ACTION_DESTROY, false },
	{ "restart", VM_ACTION_RESTART, false },
	{ "preserve", VM_ACTION_PRESERVE, false },
	{ "rename-restart", VM_ACTION_RENAME_RESTART, false },
	/* grappe writes no guest core dump: the action after it remains. */
	{ "coredump-destroy", VM_ACTION_DESTROY, true },
	{ "coredump-restart", VM_ACTION_RESTART, true },
};

static int parse_action(struct parser *p, xmlNodePtr n, enum vm_action *out,
			bool crash)
{
	char *s;
	int rc = -1;

	if (text_of(p, n, &s))
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(actions); i++) {
		if (strcmp(s, actions[i].name) ||
		    (actions[i].crash_only && !crash))
			continue;
		*out = actions[i].action;
		rc = 0;
		break;
	}
	if (rc)
		fail(p, n, "<%s> must be destroy, restart, preserve or "
		     "rename-restart%s, got '" QUOTE "'", (const char *)n->name,
		     crash ? " (or coredump-destroy, coredump-restart)" : "",
		     s);
	free(s);
	return rc;
}

static int parse_on_poweroff(struct parser *p, xmlNodePtr n)
{
	return parse_action(p, n, &p->cfg->on_poweroff, false);
}

static int parse_on_reboot(struct parser *p, xmlNodePtr n)
{
	return parse_action(p, n, &p->cfg->on_reboot, false);
}

static int parse_on_crash(struct parser *p, xmlNodePtr n)
{
	return parse_action(p, n, &p->cfg->on_crash, true);
}

/* <grappe:cluster>: which node runs which cell (mgmt/cluster_xml.c). */
static int parse_cluster_metadata(struct parser *p, xmlNodePtr n)
{
	char err[VM_CONFIG_ERR_LEN];

	if (!cluster_xml_parse(n, p->name, p->base_dir, &p->cfg->cluster, err, sizeof(err)) &&
	    !volume_xml_parse(n, p->name, p->base_dir, p->cfg, err, sizeof(err)))
		return 0;
	p->failed = true;
	snprintf(p->err, VM_CONFIG_ERR_LEN, "%s", err);
	return -1;
}

/*
 * Kept whole for the parts of grappe that read their own namespace in it
 * (cell to host mapping). Copying the element declares on the copy any
 * namespace it inherited from <domain>, so the text stands alone.
 */
static int parse_metadata(struct parser *p, xmlNodePtr n)
{
	xmlNodePtr copy = xmlDocCopyNode(n, n->doc, 1);
	xmlBufferPtr buf = xmlBufferCreate();
	int rc = 0;

	if (!copy || !buf || xmlNodeDump(buf, n->doc, copy, 0, 0) < 0)
		rc = fail_oom(p);
	else if (!(p->cfg->metadata = strdup((const char *)
					     xmlBufferContent(buf))))
		rc = fail_oom(p);
	xmlFreeNode(copy);
	xmlBufferFree(buf);
	if (!rc)
		rc = parse_cluster_metadata(p, n);
	return rc;
}

/* ---- <os> ---- */

static int parse_os_type(struct parser *p, xmlNodePtr n)
{
	char *type, *arch = NULL;
	int rc;

	rc = text_of(p, n, &type);
	if (!rc)
		rc = attr_of(p, n, "arch", &arch);
	if (!rc && strcmp(type, "hvm"))
		rc = fail(p, n, "<os><type> must be 'hvm', got '" QUOTE "'",
			  type);
	if (!rc && arch && strcmp(arch, "x86_64") && strcmp(arch, "i686"))
		rc = fail(p, n, "arch '" QUOTE "' is not supported: the "
			  "machine is x86_64", arch);
	free(type);
	free(arch);
	return rc;
}

static int os_string(struct parser *p, xmlNodePtr n, char **out)
{
	if (text_of(p, n, out))
		return -1;
	if (!**out)
		return fail(p, n, "<%s> is empty", (const char *)n->name);
	return 0;
}

static int parse_kernel(struct parser *p, xmlNodePtr n)
{
	return os_string(p, n, &p->cfg->kernel);
}

static int parse_initrd(struct parser *p, xmlNodePtr n)
{
	return os_string(p, n, &p->cfg->initrd);
}

/* An empty command line is a valid one. */
static int parse_cmdline(struct parser *p, xmlNodePtr n)
{
	return text_of(p, n, &p->cfg->cmdline);
}

static int parse_os(struct parser *p, xmlNodePtr n)
{
	static const struct handler h[] = {
		{ "type", parse_os_type, false },
		{ "kernel", parse_kernel, false },
		{ "initrd", parse_initrd, false },
		{ "cmdline", parse_cmdline, false },
		{ "boot", NULL, true },
	};

	return walk(p, n, h, ARRAY_SIZE(h));
}

/* ---- <cpu><numa> ---- */

static int cpuset_index(struct parser *p, xmlNodePtr n, const char **s,
			unsigned *v)
{
	const char *c = *s;
	uint64_t r = 0;

	if (*c < '0' || *c > '9')
		return fail(p, n, "cpus: expected a vCPU number at '" QUOTE
			    "'", c);
	for (; *c >= '0' && *c <= '9'; c++) {
		r = r * 10 + (unsigned)(*c - '0');
		if (r >= VM_MAX_VCPUS)
			return fail(p, n, "cpus: vCPU numbers go up to %d",
				    VM_MAX_VCPUS - 1);
	}
	*v = (unsigned)r;
	*s = c;
	return 0;
}

static void skip_blanks(const char **s)
{
	while (is_blank(**s))
		(*s)++;
}

static uint64_t range_mask(unsigned a, unsigned b)
{
	uint64_t hi = b == 63 ? UINT64_MAX : ((uint64_t)1 << (b + 1)) - 1;

	return hi & ~(((uint64_t)1 << a) - 1);
}

/* libvirt cpuset syntax: comma-separated "N", "N-M" and "^N" (removal). */
static int parse_cpuset(struct parser *p, xmlNodePtr n, const char *s,
			uint64_t *mask)
{
	uint64_t add = 0, del = 0;

	for (;;) {
		bool neg;
		unsigned a = 0, b = 0;

		skip_blanks(&s);
		neg = *s == '^';
		s += neg;
		if (cpuset_index(p, n, &s, &a))
			return -1;
		b = a;
		if (!neg && *s == '-') {
			s++;
			if (cpuset_index(p, n, &s, &b))
				return -1;
			if (b < a)
				return fail(p, n, "cpus: range %u-%u is "
					    "reversed", a, b);
		}
		*(neg ? &del : &add) |= range_mask(a, b);
		skip_blanks(&s);
		if (!*s)
			break;
		if (*s != ',')
			return fail(p, n, "cpus: unexpected '" QUOTE "'", s);
		s++;
	}
	*mask = add & ~del;
	if (!*mask)
		return fail(p, n, "cpus names no vCPU");
	return 0;
}

static int parse_sibling(struct parser *p, xmlNodePtr n)
{
	unsigned cell = p->cfg->nr_cells;
	struct vm_cell *c = &p->cfg->cells[cell];
	char *id = NULL, *value = NULL;
	unsigned sid, v;
	int rc;

	rc = attr_of(p, n, "id", &id);
	if (!rc)
		rc = attr_of(p, n, "value", &value);
	if (rc)
		goto out;
	rc = -1;
	if (!id || !parse_uint(id, VM_MAX_CELLS - 1, &sid))
		fail(p, n, "<sibling> id must be a cell id between 0 and %d, "
		     "got '" QUOTE "'", VM_MAX_CELLS - 1, id ? id : "");
	else if (p->cells[cell].sibling[sid])
		fail(p, n, "<sibling> id %u appears twice in this cell", sid);
	else if (!value || !parse_uint(value, DIST_MAX, &v) || v < DIST_LOCAL)
		fail(p, n, "<sibling> value must be between %u and %u, got '"
		     QUOTE "'", DIST_LOCAL, DIST_MAX, value ? value : "");
	else if (sid == c->id && v != DIST_LOCAL)
		fail(p, n, "distance of cell %u to itself must be %u, got %u",
		     sid, DIST_LOCAL, v);
	else if (sid != c->id && v == DIST_LOCAL)
		fail(p, n, "distance from cell %u to cell %u must be more "
		     "than %u", c->id, sid, DIST_LOCAL);
	else
		rc = 0;
	if (!rc) {
		p->cells[cell].sibling[sid] = n;
		c->distance[sid] = v;
	}
out:
	free(id);
	free(value);
	return rc;
}

static int parse_distances(struct parser *p, xmlNodePtr n)
{
	static const struct handler h[] = {
		{ "sibling", parse_sibling, true },
	};

	return walk(p, n, h, ARRAY_SIZE(h));
}

/* libvirt numbers cells in document order when id= is left out. */
static int cell_id(struct parser *p, xmlNodePtr n, unsigned *id)
{
	char *s;
	int rc = 0;

	if (attr_of(p, n, "id", &s))
		return -1;
	if (!s)
		*id = p->cfg->nr_cells;
	else if (!parse_uint(s, VM_MAX_CELLS - 1, id))
		rc = fail(p, n, "<cell> id must be between 0 and %d, got '"
			  QUOTE "'", VM_MAX_CELLS - 1, s);
	free(s);
	return rc;
}

static int cell_attrs(struct parser *p, xmlNodePtr n, struct vm_cell *c,
		      struct cell_aux *aux)
{
	char *cpus = NULL, *mem = NULL, *unit = NULL;
	int rc;

	rc = cell_id(p, n, &c->id);
	if (!rc)
		rc = attr_of(p, n, "cpus", &cpus);
	if (!rc)
		rc = attr_of(p, n, "memory", &mem);
	if (!rc)
		rc = attr_of(p, n, "unit", &unit);
	if (!rc && !cpus)
		rc = fail(p, n, "<cell> needs cpus=");
	if (!rc && !mem)
		rc = fail(p, n, "<cell> needs memory=");
	if (!rc)
		rc = parse_cpuset(p, n, cpus, &aux->vcpus);
	if (!rc)
		rc = parse_mem(p, n, "<cell> memory", mem, unit, &aux->raw_mem);
	free(cpus);
	free(mem);
	free(unit);
	return rc;
}

static int parse_cell(struct parser *p, xmlNodePtr n)
{
	static const struct handler h[] = {
		{ "distances", parse_distances, false },
	};
	unsigned i = p->cfg->nr_cells;

	if (i == VM_MAX_CELLS)
		return fail(p, n, "too many cells (at most %d)", VM_MAX_CELLS);
	p->cells[i].node = n;
	if (cell_attrs(p, n, &p->cfg->cells[i], &p->cells[i]))
		return -1;
	if (walk(p, n, h, ARRAY_SIZE(h)))
		return -1;
	p->cfg->nr_cells++;
	return 0;
}

static int parse_numa(struct parser *p, xmlNodePtr n)
{
	static const struct handler h[] = {
		{ "cell", parse_cell, true },
	};

	p->numa = n;
	if (walk(p, n, h, ARRAY_SIZE(h)))
		return -1;
	if (!p->cfg->nr_cells)
		return fail(p, n, "<numa> has no <cell>");
	return 0;
}

/* mode= and match= are tolerated: the CPUID is the cluster's common set. */
static int parse_cpu(struct parser *p, xmlNodePtr n)
{
	static const struct handler h[] = {
		{ "numa", parse_numa, false },
	};

	return walk(p, n, h, ARRAY_SIZE(h));
}

/* ACPI and the local APIC are always there; PAE comes with long mode. */
static int parse_features(struct parser *p, xmlNodePtr n)
{
	static const struct handler h[] = {
		{ "acpi", NULL, false },
		{ "apic", NULL, false },
		{ "pae", NULL, false },
	};

	return walk(p, n, h, ARRAY_SIZE(h));
}

/* ---- <devices> ---- */

static int parse_serial(struct parser *p, xmlNodePtr n)
{
	if (!p->serial)
		p->serial = n;
	else
		warn_line(p, xmlGetLineNo(n), "only the first <serial> is "
			  "used (line %ld), this one is ignored",
			  xmlGetLineNo(p->serial));
	return 0;
}

static int parse_console(struct parser *p, xmlNodePtr n)
{
	if (!p->console)
		p->console = n;
	return 0;
}

/* ---- <disk> [issue #4: disks] ---- */

static struct vm_disk *cur_disk(struct parser *p)
{
	return p->disk;
}

/* <driver name='qemu' type='raw' cache='none' io='native' discard='unmap'/> */
static int parse_disk_driver(struct parser *p, xmlNodePtr n)
{
	static const char *const caches[] = {
		[VM_DISK_CACHE_DEFAULT] = "default", [VM_DISK_CACHE_NONE] = "none",
		[VM_DISK_CACHE_WRITEBACK] = "writeback",
		[VM_DISK_CACHE_WRITETHROUGH] = "writethrough",
		[VM_DISK_CACHE_DIRECTSYNC] = "directsync", [VM_DISK_CACHE_UNSAFE] = "unsafe",
	};
	struct vm_disk *d = cur_disk(p);
	char *type = NULL, *cache = NULL, *io = NULL, *discard = NULL;
	int rc = attr_of(p, n, "type", &type);

	if (!rc)
		rc = attr_of(p, n, "cache", &cache);
	if (!rc)
		rc = attr_of(p, n, "io", &io);
	if (!rc)
		rc = attr_of(p, n, "discard", &discard);
	if (!rc && type && strcmp(type, "raw"))
		rc = fail(p, n, "<driver> type '" QUOTE "' is not supported: disks are raw "
			  "images (type='raw')", type);
	if (!rc && cache) {
		size_t i;

		for (i = 0; i < ARRAY_SIZE(caches); i++)
			if (!strcmp(cache, caches[i]))
				break;
		if (i == ARRAY_SIZE(caches))
			rc = fail(p, n, "<driver> cache '" QUOTE "' is not one of default, none, "
				  "writeback, writethrough, directsync, unsafe", cache);
		else
			d->cache = (enum vm_disk_cache)i;
	}
	/*
	 * Every libvirt value is accepted: 'native' and 'io_uring' ask for
	 * asynchronous I/O (an io_uring per queue) where the store has it;
	 * 'threads' and 'default' keep requests on the queue's worker threads,
	 * as libvirt's default does for QEMU (docs/devices.md says why).
	 */
	if (!rc && io && strcmp(io, "native") && strcmp(io, "threads") &&
	    strcmp(io, "io_uring") && strcmp(io, "default"))
		rc = fail(p, n, "<driver> io '" QUOTE "' is not one of native, threads, "
			  "io_uring, default", io);
	if (!rc && io)
		d->io_uring = !strcmp(io, "native") || !strcmp(io, "io_uring");
	if (!rc && discard) {
		if (!strcmp(discard, "ignore"))
			d->discard = false;
		else if (strcmp(discard, "unmap") && strcmp(discard, "default"))
			rc = fail(p, n, "<driver> discard '" QUOTE "' is not unmap or ignore",
				  discard);
	}
	free(type);
	free(cache);
	free(io);
	free(discard);
	return rc;
}

/* <source pool='grappe' volume='NAME'/>: a <grappe:volume> of <metadata>. */
static int parse_volume_source(struct parser *p, xmlNodePtr n)
{
	struct vm_disk *d = cur_disk(p);
	char *pool = NULL, *vol = NULL;
	int rc = attr_of(p, n, "pool", &pool);

	if (!rc)
		rc = attr_of(p, n, "volume", &vol);
	if (!rc && (!pool || strcmp(pool, "grappe")))
		rc = fail(p, n, "<disk type='volume'> needs <source pool='grappe' volume='...'/>, "
			  "got pool '" QUOTE "'", pool ? pool : "");
	if (!rc && (!vol || !*vol || strlen(vol) > VM_VOLUME_NAME_MAX))
		rc = fail(p, n, "<disk type='volume'> needs <source volume='NAME'/> naming a "
			  "<grappe:volume>");
	if (!rc)
		snprintf(d->volume, sizeof(d->volume), "%s", vol);
	free(pool);
	free(vol);
	return rc;
}

static int parse_disk_source(struct parser *p, xmlNodePtr n)
{
	struct vm_disk *d = cur_disk(p);
	const char *attr = d->type == VM_DISK_BLOCK ? "dev" : "file";
	char *path;

	if (d->type == VM_DISK_VOLUME)
		return parse_volume_source(p, n);
	if (attr_of(p, n, attr, &path))
		return -1;
	if (!path || !*path) {
		free(path);
		return fail(p, n, "<disk type='%s'> needs <source %s='...'/>",
			    d->type == VM_DISK_BLOCK ? "block" : "file", attr);
	}
	d->path = path;
	return 0;
}

static bool target_ok(const char *t)
{
	if (!*t || strlen(t) >= sizeof(((struct vm_disk *)0)->target))
		return false;
	for (; *t; t++)
		if (!((*t >= 'a' && *t <= 'z') || (*t >= '0' && *t <= '9')))
			return false;
	return true;
}

static int parse_disk_target(struct parser *p, xmlNodePtr n)
{
	struct vm_disk *d = cur_disk(p);
	char *dev = NULL, *bus = NULL;
	int rc = attr_of(p, n, "dev", &dev);

	if (!rc)
		rc = attr_of(p, n, "bus", &bus);
	if (!rc && (!dev || !target_ok(dev)))
		rc = fail(p, n, "<target> dev must be a short name of lower-case letters "
			  "and digits such as 'vda', got '" QUOTE "'", dev ? dev : "");
	if (!rc && bus && strcmp(bus, "virtio"))
		rc = fail(p, n, "<target> bus '" QUOTE "' is not supported: disks are "
			  "virtio-blk (bus='virtio')", bus);
	if (!rc)
		snprintf(d->target, sizeof(d->target), "%s", dev);
	free(dev);
	free(bus);
	return rc;
}

/* virtio-blk IDs are 20 bytes: a longer serial is cut, as QEMU does. */
static int parse_disk_serial(struct parser *p, xmlNodePtr n)
{
	struct vm_disk *d = cur_disk(p);
	char *serial;

	if (text_of(p, n, &serial))
		return -1;
	if (strlen(serial) > VM_DISK_SERIAL_MAX)
		warn_line(p, xmlGetLineNo(n), "<serial> '" QUOTE "' is longer than %d bytes; "
			  "the guest sees its first %d", serial, VM_DISK_SERIAL_MAX,
			  VM_DISK_SERIAL_MAX);
	snprintf(d->serial, sizeof(d->serial), "%.*s", VM_DISK_SERIAL_MAX, serial);
	free(serial);
	return 0;
}

/* One <blockio> size attribute: a power of two in [512, max], or absent (0). */
static int block_size_attr(struct parser *p, xmlNodePtr n, const char *name, unsigned max,
			   unsigned *out)
{
	char *v = NULL;
	int rc = attr_of(p, n, name, &v);

	if (!rc && v && (!parse_uint(v, max, out) || *out < 512 || (*out & (*out - 1))))
		rc = fail(p, n, "<blockio> %s must be a power of two from 512 to %u bytes, "
			  "got '" QUOTE "'", name, max, v);
	free(v);
	return rc;
}

/*
 * <blockio logical_block_size='4096' physical_block_size='4096'/> (libvirt's).
 * Logical blocks are 512 or 4096 bytes, as disks have them (and as the
 * store protocol carries them between nodes); the physical block, which
 * only advises the guest, any power of two up to 64 KiB.
 */
static int parse_disk_blockio(struct parser *p, xmlNodePtr n)
{
	struct vm_disk *d = cur_disk(p);
	unsigned lbs;

	if (block_size_attr(p, n, "logical_block_size", 4096, &d->logical_block) ||
	    block_size_attr(p, n, "physical_block_size", 65536, &d->physical_block))
		return -1;
	if (d->logical_block && d->logical_block != 512 && d->logical_block != 4096)
		return fail(p, n, "<blockio> logical_block_size must be 512 or 4096, got %u",
			    d->logical_block);
	lbs = vm_disk_logical_block(d);
	if (d->physical_block && d->physical_block < lbs)
		return fail(p, n, "<blockio> physical_block_size %u is smaller than the "
			    "%u-byte logical block", d->physical_block, lbs);
	return 0;
}

static int parse_disk_readonly(struct parser *p, xmlNodePtr n)
{
	cur_disk(p)->readonly = true;
	return 0;
}

static int disk_kind(struct parser *p, xmlNodePtr n, struct vm_disk *d)
{
	char *type = NULL, *device = NULL;
	int rc = attr_of(p, n, "type", &type);

	if (!rc)
		rc = attr_of(p, n, "device", &device);
	if (!rc && type && !strcmp(type, "block"))
		d->type = VM_DISK_BLOCK;
	else if (!rc && type && !strcmp(type, "volume"))
		d->type = VM_DISK_VOLUME;
	else if (!rc && type && strcmp(type, "file"))
		rc = fail(p, n, "<disk> type '" QUOTE "' is not supported (use file, block "
			  "or volume)",
			  type);
	if (!rc && device && strcmp(device, "disk"))
		rc = fail(p, n, "<disk> device '" QUOTE "' is not supported: only "
			  "device='disk'", device);
	free(type);
	free(device);
	return rc;
}

static int parse_disk(struct parser *p, xmlNodePtr n)
{
	static const struct handler h[] = {
		{ "driver", parse_disk_driver, false },
		{ "source", parse_disk_source, false },
		{ "target", parse_disk_target, false },
		{ "serial", parse_disk_serial, false },
		{ "readonly", parse_disk_readonly, false },
		{ "blockio", parse_disk_blockio, false },
		/* libvirt writes these; the machine places and names disks itself. */
		{ "address", NULL, false },
		{ "alias", NULL, false },
		{ "boot", NULL, false },
	};
	struct vm_config *cfg = p->cfg;
	struct vm_disk *d;

	if (cfg->nr_disks == VM_MAX_DISKS)
		return fail(p, n, "more than %d disks", VM_MAX_DISKS);
	d = &cfg->disks[cfg->nr_disks];
	memset(d, 0, sizeof(*d));
	d->discard = true;
	d->line = xmlGetLineNo(n);
	/* Counted now so that vm_config_free() finds a path set before an error. */
	cfg->nr_disks++;
	p->disk = d;
	if (disk_kind(p, n, d) || walk(p, n, h, ARRAY_SIZE(h)))
		return -1;
	if (d->type == VM_DISK_VOLUME && !d->volume[0])
		return fail(p, n, "<disk type='volume'> has no <source pool='grappe' volume='...'/>");
	if (d->type != VM_DISK_VOLUME && !d->path)
		return fail(p, n, "<disk> has no <source %s='...'/>",
			    d->type == VM_DISK_BLOCK ? "dev" : "file");
	if (!d->target[0])
		return fail(p, n, "<disk> has no <target dev='...'/>");
	for (unsigned i = 0; i + 1 < cfg->nr_disks; i++)
		if (!strcmp(cfg->disks[i].target, d->target))
			return fail(p, n, "disk target '%s' is used twice (first on line %ld)",
				    d->target, cfg->disks[i].line);
	return 0;
}

/* ---- end of <disk> ---- */

static int parse_devices(struct parser *p, xmlNodePtr n)
{
	static const struct handler h[] = {
		{ "serial", parse_serial, true },
		{ "console", parse_console, true },
		{ "disk", parse_disk, true },	/* [issue #4: disks] */
	};

	return walk(p, n, h, ARRAY_SIZE(h));
}

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n->children; c; c = c->next)
		if (is(c, name))
			return c;
	return NULL;
}

static int chardev_file(struct parser *p, xmlNodePtr n)
{
	xmlNodePtr src = child(n, "source");
	char *path = NULL;

	if (src && attr_of(p, src, "path", &path))
		return -1;
	if (!path || !*path) {
		free(path);
		return fail(p, src ? src : n, "<%s type='file'> needs "
			    "<source path='...'/>", (const char *)n->name);
	}
	p->cfg->serial_path = path;
	p->cfg->serial = VM_SERIAL_FILE;
	return 0;
}

/* libvirt takes a character device without type= to be a pty. */
static int parse_chardev(struct parser *p, xmlNodePtr n)
{
	char *type;
	int rc = 0;

	if (attr_of(p, n, "type", &type))
		return -1;
	if (!type || !strcmp(type, "pty"))
		p->cfg->serial = VM_SERIAL_PTY;
	else if (!strcmp(type, "stdio"))
		p->cfg->serial = VM_SERIAL_STDIO;
	else if (!strcmp(type, "null"))
		p->cfg->serial = VM_SERIAL_NONE;
	else if (!strcmp(type, "file"))
		rc = chardev_file(p, n);
	else
		rc = fail(p, n, "<%s> type '" QUOTE "' is not supported (use "
			  "stdio, file, pty or null)", (const char *)n->name,
			  type);
	free(type);
	return rc;
}

/*
 * A <console> is libvirt's other name for the first serial port, unless its
 * target is another kind of console (virtio), which grappe lacks.
 */
static int pick_serial(struct parser *p)
{
	xmlNodePtr target;
	char *type = NULL;
	bool serial_target;

	if (p->serial)
		return parse_chardev(p, p->serial);
	if (!p->console)
		return 0;
	target = child(p->console, "target");
	if (target && attr_of(p, target, "type", &type))
		return -1;
	serial_target = !target || !type || !strcmp(type, "serial");
	if (!serial_target)
		warn_line(p, xmlGetLineNo(target), "<console> target type '"
			  QUOTE "' is not supported yet, ignored", type);
	free(type);
	return serial_target ? parse_chardev(p, p->console) : 0;
}

/* ---- checks that need the whole document ---- */

static int order_cells(struct parser *p)
{
	struct vm_config *cfg = p->cfg;
	struct vm_cell cells[VM_MAX_CELLS];
	struct cell_aux aux[VM_MAX_CELLS];
	bool placed[VM_MAX_CELLS] = { false };

	for (unsigned i = 0; i < cfg->nr_cells; i++) {
		unsigned id = cfg->cells[i].id;

		if (id >= cfg->nr_cells)
			return fail(p, p->cells[i].node, "<cell> id %u is out "
				    "of range: ids must be 0..%u", id,
				    cfg->nr_cells - 1);
		if (placed[id])
			return fail(p, p->cells[i].node, "<cell> id %u appears "
				    "twice (first on line %ld)", id,
				    xmlGetLineNo(aux[id].node));
		placed[id] = true;
		cells[id] = cfg->cells[i];
		aux[id] = p->cells[i];
	}
	memcpy(cfg->cells, cells, sizeof(cells[0]) * cfg->nr_cells);
	memcpy(p->cells, aux, sizeof(aux[0]) * cfg->nr_cells);
	return 0;
}

static int check_partition(struct parser *p)
{
	struct vm_config *cfg = p->cfg;
	uint64_t seen = 0, all = range_mask(0, cfg->nr_vcpus - 1);

	for (unsigned i = 0; i < cfg->nr_cells; i++) {
		uint64_t m = p->cells[i].vcpus;
		xmlNodePtr n = p->cells[i].node;

		if (m & ~all)
			return fail(p, n, "cell %u has vCPU %d but there are "
				    "only %u vCPUs", i,
				    63 - __builtin_clzll(m & ~all),
				    cfg->nr_vcpus);
		if (m & seen)
			return fail(p, n, "vCPU %d is in more than one cell",
				    __builtin_ctzll(m & seen));
		seen |= m;
	}
	if (seen != all)
		return fail(p, p->numa, "vCPU %d is in no cell: the cells' "
			    "cpus must cover 0-%u",
			    __builtin_ctzll(all & ~seen), cfg->nr_vcpus - 1);
	return 0;
}

static int check_cell_memory(struct parser *p)
{
	struct vm_config *cfg = p->cfg;
	uint64_t raw = 0, total = 0;

	for (unsigned i = 0; i < cfg->nr_cells; i++) {
		raw += p->cells[i].raw_mem;
		cfg->cells[i].mem_bytes = mem_round(p->cells[i].raw_mem);
		total += cfg->cells[i].mem_bytes;
	}
	if (p->memory && raw != p->raw_mem)
		return fail(p, p->numa, "the cells' memory adds up to %llu "
			    "bytes but <memory> is %llu bytes",
			    (unsigned long long)raw,
			    (unsigned long long)p->raw_mem);
	if (total > MEM_MAX)
		return fail(p, p->numa, "the cells' memory is too large (at "
			    "most %llu bytes)", (unsigned long long)MEM_MAX);
	/* Rounding cell by cell keeps the sum equal to the machine's RAM. */
	cfg->mem_bytes = total;
	return 0;
}

static int fill_distances(struct parser *p)
{
	struct vm_config *cfg = p->cfg;
	unsigned n = cfg->nr_cells;

	for (unsigned i = 0; i < n; i++)
		for (unsigned j = n; j < VM_MAX_CELLS; j++)
			if (p->cells[i].sibling[j])
				return fail(p, p->cells[i].sibling[j],
					    "<sibling> id %u is not a cell", j);
	for (unsigned i = 0; i < n; i++) {
		for (unsigned j = 0; j < n; j++) {
			unsigned *d = &cfg->cells[i].distance[j];

			if (*d)
				continue;
			*d = cfg->cells[j].distance[i];
			if (!*d || i == j)
				*d = i == j ? DIST_LOCAL : DIST_REMOTE;
		}
	}
	return 0;
}

static void list_vcpus(struct vm_cell *c, uint64_t mask)
{
	c->nr_vcpus = 0;
	for (unsigned v = 0; v < VM_MAX_VCPUS; v++)
		if (mask & ((uint64_t)1 << v))
			c->vcpus[c->nr_vcpus++] = v;
}

static int finish_cells(struct parser *p)
{
	if (order_cells(p) || check_partition(p) || check_cell_memory(p) ||
	    fill_distances(p))
		return -1;
	for (unsigned i = 0; i < p->cfg->nr_cells; i++)
		list_vcpus(&p->cfg->cells[i], p->cells[i].vcpus);
	return 0;
}

static int resolve(struct parser *p, char **path)
{
	char *abs;

	if (!*path || !p->base_dir || (*path)[0] == '/')
		return 0;
	if (asprintf(&abs, "%s/%s", p->base_dir, *path) < 0)
		return fail_oom(p);
	free(*path);
	*path = abs;
	return 0;
}

static int finish(struct parser *p)
{
	struct vm_config *cfg = p->cfg;

	if (!cfg->name)
		return fail(p, p->root, "<name> is missing");
	if (!p->memory && !cfg->nr_cells)
		return fail(p, p->root, "<memory> is missing");
	if (!p->vcpu)
		cfg->nr_vcpus = 1;	/* libvirt's default */
	if (cfg->nr_cells) {
		if (finish_cells(p))
			return -1;
	} else {
		cfg->mem_bytes = mem_round(p->raw_mem);
	}
	check_current_memory(p);
	if ((cfg->initrd || cfg->cmdline) && !cfg->kernel)
		return fail(p, p->root, "<initrd> and <cmdline> need <kernel>");
	if (pick_serial(p))
		return -1;
	if (resolve(p, &cfg->kernel) || resolve(p, &cfg->initrd) ||
	    resolve(p, &cfg->serial_path))
		return -1;
	for (unsigned i = 0; i < cfg->nr_disks; i++)	/* [issue #4: disks] */
		if (resolve(p, &cfg->disks[i].path))
			return -1;
	if (vm_volumes_check(cfg, p->err)) {
		p->failed = true;
		return -1;
	}
	return 0;
}

static int parse_domain_type(struct parser *p, xmlNodePtr root)
{
	char *type;
	int rc = 0;

	if (attr_of(p, root, "type", &type))
		return -1;
	if (!type || (strcmp(type, "kvm") && strcmp(type, "grappe")))
		rc = fail(p, root, "<domain> type must be 'kvm' or 'grappe', "
			  "got '" QUOTE "'", type ? type : "");
	free(type);
	return rc;
}

static int parse_domain(struct parser *p, xmlNodePtr root)
{
	static const struct handler h[] = {
		{ "name", parse_name, false },
		{ "uuid", NULL, false },
		{ "title", NULL, false },
		{ "description", NULL, false },
		{ "metadata", parse_metadata, false },
		{ "memory", parse_memory, false },
		{ "currentMemory", parse_current_memory, false },
		{ "vcpu", parse_vcpu, false },
		{ "os", parse_os, false },
		{ "cpu", parse_cpu, false },
		{ "features", parse_features, false },
		{ "on_poweroff", parse_on_poweroff, false },
		{ "on_reboot", parse_on_reboot, false },
		{ "on_crash", parse_on_crash, false },
		{ "devices", parse_devices, false },
	};
	char what[128];

	p->root = root;
	if (!is(root, "domain")) {
		elem_name(root, what, sizeof(what));
		return fail(p, root, "the root element must be <domain>, got "
			    "<%s>", what);
	}
	if (parse_domain_type(p, root) || walk(p, root, h, ARRAY_SIZE(h)))
		return -1;
	return finish(p);
}

/* ---- libxml2 ---- */

static void xml_error(void *data, xmlErrorPtr e)
{
	struct parser *p = data;
	const char *msg = e->message ? e->message : "XML error";
	int len = (int)strlen(msg);

	while (len > 0 && is_blank(msg[len - 1]))
		len--;
	if (e->level == XML_ERR_WARNING)
		warn_line(p, e->line, "%.*s", len, msg);
	else
		fail_line(p, e->line, "%.*s", len, msg);
}

/* Called for every DOCTYPE, before its internal subset is read. */
static void reject_doctype(void *ctx, const xmlChar *name,
			   const xmlChar *external_id, const xmlChar *system_id)
{
	xmlParserCtxtPtr ctxt = ctx;

	fail_line(ctxt->_private, xmlSAX2GetLineNumber(ctxt), "<!DOCTYPE> "
		  "is not allowed: DTDs and entities are refused as unsafe");
	xmlStopParser(ctxt);
}

static void reject_entity(void *ctx, const xmlChar *name, int type,
			  const xmlChar *public_id, const xmlChar *system_id,
			  xmlChar *content)
{
	reject_doctype(ctx, name, public_id, system_id);
}

/*
 * libxml2's error hooks are per thread: install ours for this parse and put
 * back whatever the caller had, so concurrent parses don't mix messages.
 */
static xmlDocPtr read_xml(struct parser *p, const char *buf, size_t len)
{
	xmlStructuredErrorFunc old_fn = xmlStructuredError;
	void *old_ctx = xmlStructuredErrorContext;
	xmlParserCtxtPtr ctxt;
	xmlDocPtr doc = NULL;

	xmlInitParser();
	ctxt = xmlNewParserCtxt();
	if (!ctxt) {
		fail_oom(p);
		return NULL;
	}
	ctxt->_private = p;
	ctxt->sax->internalSubset = reject_doctype;
	ctxt->sax->externalSubset = reject_doctype;
	ctxt->sax->entityDecl = reject_entity;
	xmlSetStructuredErrorFunc(p, xml_error);
	doc = xmlCtxtReadMemory(ctxt, buf, (int)len, p->name, NULL,
				XML_PARSE_NONET | XML_PARSE_BIG_LINES);
	xmlSetStructuredErrorFunc(old_ctx, old_fn);
	if (!doc)
		fail_line(p, 0, "not a well-formed XML document");
	else if (doc->intSubset || doc->extSubset)
		fail_line(p, 0, "DTDs are not allowed");
	xmlFreeParserCtxt(ctxt);
	if (p->failed && doc) {
		xmlFreeDoc(doc);
		doc = NULL;
	}
	return doc;
}

static int parse(const char *buf, size_t len, const char *name,
		 const char *base_dir, struct vm_config **out, char *err,
		 void (*warn)(void *ctx, const char *msg), void *warn_ctx)
{
	struct parser p = {
		.name = name ? name : "(buffer)", .base_dir = base_dir,
		.err = err, .warn = warn, .warn_ctx = warn_ctx,
	};
	xmlDocPtr doc;
	xmlNodePtr root;

	*out = NULL;
	err[0] = '\0';
	if (len > VM_CONFIG_MAX_XML)
		return fail_line(&p, 0, "input is larger than %u bytes",
				 VM_CONFIG_MAX_XML);
	p.cfg = calloc(1, sizeof(*p.cfg));
	if (!p.cfg || !(p.cfg->source = strdup(p.name))) {
		free(p.cfg);
		return fail_oom(&p);
	}
	p.cfg->on_reboot = VM_ACTION_RESTART;
	p.cfg->serial = VM_SERIAL_NONE;
	doc = read_xml(&p, buf, len);
	root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (doc && !root)
		fail_line(&p, 0, "the document has no root element");
	if (root)
		parse_domain(&p, root);
	xmlFreeDoc(doc);
	if (p.failed) {
		vm_config_free(p.cfg);
		return -1;
	}
	*out = p.cfg;
	return 0;
}

int vm_config_parse(const char *buf, size_t len, const char *name,
		    struct vm_config **out, char err[VM_CONFIG_ERR_LEN],
		    void (*warn)(void *ctx, const char *msg), void *warn_ctx)
{
	char scratch[VM_CONFIG_ERR_LEN];

	return parse(buf, len, name, NULL, out, err ? err : scratch, warn,
		     warn_ctx);
}

/* ---- files ---- */

/* Reads one byte past the limit to tell "exactly full" from "too big". */
static int read_all(int fd, char *buf, size_t cap, size_t *len)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t r = read(fd, buf + got, cap - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	*len = got;
	return 0;
}

static int read_file(const char *path, char **buf, size_t *len, char *err)
{
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, VM_CONFIG_ERR_LEN, "%s: %s", path,
			 strerror(errno));
		return -1;
	}
	*buf = malloc(VM_CONFIG_MAX_XML + 1);
	rc = *buf ? read_all(fd, *buf, VM_CONFIG_MAX_XML + 1, len) : -ENOMEM;
	close(fd);
	if (rc) {
		snprintf(err, VM_CONFIG_ERR_LEN, "%s: %s", path, strerror(-rc));
		free(*buf);
		return -1;
	}
	return 0;
}

/*
 * Relative paths in the file are relative to the file, and are made
 * absolute so that they keep their meaning whatever the process's working
 * directory later becomes.
 */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *cwd, *dir;

	if (slash == path)
		return strdup("/");
	if (path[0] == '/')
		return strndup(path, slash - path);
	cwd = getcwd(NULL, 0);
	if (!cwd)
		return NULL;
	if (!slash)
		return cwd;
	if (asprintf(&dir, "%s/%.*s", cwd, (int)(slash - path), path) < 0)
		dir = NULL;
	free(cwd);
	return dir;
}

int vm_config_load(const char *path, struct vm_config **out,
		   char err[VM_CONFIG_ERR_LEN],
		   void (*warn)(void *ctx, const char *msg), void *warn_ctx)
{
	char scratch[VM_CONFIG_ERR_LEN];
	char *buf, *dir;
	size_t len = 0;
	int rc;

	*out = NULL;
	err = err ? err : scratch;
	if (read_file(path, &buf, &len, err))
		return -1;
	dir = dir_of(path);
	if (!dir) {
		snprintf(err, VM_CONFIG_ERR_LEN, "%s: cannot find its "
			 "directory: %s", path, strerror(errno));
		free(buf);
		return -1;
	}
	rc = parse(buf, len, path, dir, out, err, warn, warn_ctx);
	free(dir);
	free(buf);
	return rc;
}

void vm_config_free(struct vm_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->name);
	free(cfg->source);
	free(cfg->kernel);
	free(cfg->initrd);
	free(cfg->cmdline);
	free(cfg->serial_path);
	free(cfg->metadata);
	for (unsigned i = 0; i < cfg->nr_disks; i++)	/* [issue #4: disks] */
		free(cfg->disks[i].path);
	cluster_xml_free(&cfg->cluster);
	volume_xml_free(cfg);
	free(cfg);
}

unsigned vm_config_vcpu_cell(const struct vm_config *cfg, unsigned vcpu)
{
	for (unsigned i = 0; i < cfg->nr_cells; i++)
		for (unsigned j = 0; j < cfg->cells[i].nr_vcpus; j++)
			if (cfg->cells[i].vcpus[j] == vcpu)
				return i;
	return 0;
}
