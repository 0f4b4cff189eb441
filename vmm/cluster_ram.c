// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

#include <json-c/json.h>

#include "dsm/dsm.h"
#include "dsm/dsm_fabric.h"
#include "vmm/cluster_ram.h"

struct cluster_ram {
	struct machine *m;
	struct fabric *f;
	struct dsm_node *dsm;
	bool shared;
	char shm_path[256];
};

/*
 * Forward progress under contention: a page granted here for a fault is
 * kept at least this long before a request may take it away (the DSM
 * parks such messages; no thread sleeps). Without it KVM, which retries
 * its access only after it is woken, can lose a page it keeps being
 * granted (seen in the lab with pages every node writes).
 */
#define HOLD_DEFAULT_US 500
/*
 * The longest a node keeps a burst of pages that other nodes want
 * (docs/dsm.md, "Bursts and turns"): the engine sizes its holds from the
 * measured fetch latency and stays within [hold, this].
 */
#define HOLD_MAX_DEFAULT_US 200000
/*
 * Turns, with three nodes or more (docs/dsm.md, "Bursts and turns"): the
 * node whose turn it is may keep its burst to the turn's end, the others
 * keep pages only their hold. Without them, 4 nodes in the lab whose vCPUs walk the
 * same guest page tables cut one another's bursts short and stopped
 * making progress. Two nodes take turns by themselves: a burst that ends
 * hands the pages to the only other node.
 */
#define TURN_DEFAULT_US 200000

static unsigned turn_default_us(unsigned nr_nodes)
{
	return nr_nodes >= 3 ? TURN_DEFAULT_US : 0;
}

static unsigned env_us(const char *name, unsigned dflt)
{
	const char *v = getenv(name);

	return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

static void dsm_fatal(void *ctx, const char *msg)
{
	struct cluster_ram *r = ctx;

	machine_fail(r->m, "guest memory: %s", msg);
}

static void dsm_log(void *ctx, const char *msg)
{
	struct cluster_ram *r = ctx;

	fprintf(stderr, "grappe-node %u: dsm: %s\n", r->m->pl.self, msg);
}

/* No vCPU of this node runs: the DSM need not keep pages for them. */
static void idle_cb(void *ctx, bool idle)
{
	struct cluster_ram *r = ctx;

	dsm_node_idle(r->dsm, idle);
}

/* An interrupt went to another node's vCPU: this node's turn with the pages ends. */
static void yield_cb(void *ctx)
{
	struct cluster_ram *r = ctx;

	dsm_node_yield(r->dsm);
}

static void quiesce_cb(void *ctx)
{
	cluster_ram_quiesce(ctx);
}

static struct json_object *jint(uint64_t v)
{
	return json_object_new_int64((int64_t)v);
}

/* query-grappe-stats: the "dsm" member (docs/control.md). */
static void dsm_stats_json(void *ctx, struct json_object *out)
{
	struct cluster_ram *r = ctx;
	struct json_object *d = json_object_new_object(), *f = json_object_new_object();
	struct json_object *hot = json_object_new_array();
	struct dsm_stats st;

	dsm_node_stats(r->dsm, &st);
	json_object_object_add(f, "read", jint(st.fault_read_miss));
	json_object_object_add(f, "write", jint(st.fault_write_miss));
	json_object_object_add(f, "upgrade", jint(st.fault_upgrade));
	json_object_object_add(f, "zero_local", jint(st.fault_zero_local));
	json_object_object_add(f, "zero_remote", jint(st.fault_zero_remote));
	json_object_object_add(f, "local", jint(st.fault_local));
	json_object_object_add(d, "faults", f);
	json_object_object_add(d, "pages_sent", jint(st.pages_tx));
	json_object_object_add(d, "bytes_sent", jint(st.bytes_tx));
	json_object_object_add(d, "pages_received", jint(st.pages_rx));
	json_object_object_add(d, "bytes_received", jint(st.bytes_rx));
	json_object_object_add(d, "invalidations", jint(st.inv_sent));
	json_object_object_add(d, "evictions", jint(st.evict_s + st.evict_m));
	json_object_object_add(d, "cache_held", jint(st.cache_held));
	json_object_object_add(d, "held_back", jint(st.held_back));
	json_object_object_add(d, "refetched", jint(st.refetched));
	json_object_object_add(d, "bursts", jint(st.bursts));
	json_object_object_add(d, "yields", jint(st.yields));
	json_object_object_add(d, "readahead", jint(st.readahead));
	json_object_object_add(d, "burst_grants", jint(st.burst_grants));
	json_object_object_add(d, "hold_ext_us", jint(st.hold_ext_ns / 1000));
	json_object_object_add(d, "hold_burst_us", jint(st.hold_burst_ns / 1000));
	json_object_object_add(d, "fetch_us", jint(st.fetch_ns / 1000));
	json_object_object_add(d, "hot_grants", jint(st.hot_grants));
	json_object_object_add(d, "held_ms", jint(st.held_ns / 1000000));
	json_object_object_add(d, "fetches", jint(st.fetches));
	json_object_object_add(d, "fetch_total_ms", jint(st.fetch_total_ns / 1000000));
	for (unsigned i = 0; i < DSM_STATS_TOP && st.top[i].count; i++) {
		struct json_object *h = json_object_new_object();
		char gpa[32];

		snprintf(gpa, sizeof(gpa), "0x%llx",
			 (unsigned long long)guest_mem_gpa(&r->m->mem, st.top[i].offset));
		json_object_object_add(h, "gpa", json_object_new_string(gpa));
		json_object_object_add(h, "moves", jint(st.top[i].count));
		json_object_array_add(hot, h);
	}
	json_object_object_add(d, "hot_pages", hot);
	json_object_object_add(out, "dsm", d);
}

/* Cells own RAM in order (as SRAT says): cell c's bytes are homed on its node. */
static unsigned fill_homes(const struct vm_config *cfg, uint64_t size, struct dsm_range *homes)
{
	uint64_t off = 0;

	if (!cfg->nr_cells) {
		homes[0] = (struct dsm_range){ 0, size, 0 };
		return 1;
	}
	for (unsigned c = 0; c < cfg->nr_cells; c++) {
		homes[c] = (struct dsm_range){ off, off + cfg->cells[c].mem_bytes,
					       vm_cluster_node_of_cell(cfg, c) };
		off += cfg->cells[c].mem_bytes;
	}
	return cfg->nr_cells;
}

static int start_dsm(struct cluster_ram *r, const struct vm_config *cfg, char *err, size_t errlen)
{
	struct dsm_range homes[VM_MAX_CELLS];
	struct dsm_transport_ops tx = dsm_fabric_ops(r->f);
	const struct vm_cluster_node *me = &cfg->cluster.nodes[r->m->pl.self];
	struct dsm_config dc = {
		.self = r->m->pl.self,
		.nr_nodes = cfg->cluster.nr_nodes,
		.mem = r->m->mem.host,
		.size = r->m->mem.size,
		.homes = homes,
		.cache_pages = me->cache_bytes / DSM_PAGE_SIZE,
		.hold_us = env_us("GRAPPE_DSM_HOLD_US", HOLD_DEFAULT_US),
		.hold_max_us = env_us("GRAPPE_DSM_HOLD_MAX_US", HOLD_MAX_DEFAULT_US),
		.turn_us = env_us("GRAPPE_DSM_TURN_US", turn_default_us(cfg->cluster.nr_nodes)),
		.hold_factor = env_us("GRAPPE_DSM_HOLD_FACTOR", 8),
		.on_fatal = dsm_fatal,
		.on_log = dsm_log,
		.cb_ctx = r,
	};

	dc.nr_homes = fill_homes(cfg, r->m->mem.size, homes);
	/*
	 * 4 KiB pages only: the DSM moves pages one by one, and khugepaged
	 * would only scan this memory in vain (docs/dsm.md, notes for the VMM).
	 */
	if (madvise(r->m->mem.host, r->m->mem.size, MADV_NOHUGEPAGE))
		fprintf(stderr, "grappe-node %u: madvise(MADV_NOHUGEPAGE): %s\n", r->m->pl.self,
			strerror(errno));
	if (dsm_node_create(&dc, &tx, &r->dsm, err, errlen) || dsm_node_start(r->dsm, err, errlen))
		return -1;
	r->m->stats_hook = dsm_stats_json;
	r->m->quiesce_hook = quiesce_cb;
	r->m->stats_ctx = r;
	machine_set_idle_hook(r->m, idle_cb, yield_cb, r);
	return 0;
}

/* Test aid: one /dev/shm file mapped over guest RAM by every node. */
static int map_shared(struct cluster_ram *r, const struct vm_config *cfg, char *err, size_t errlen)
{
	const char *tag = getenv("GRAPPE_RAM_TAG");
	void *p;
	int fd;

	snprintf(r->shm_path, sizeof(r->shm_path), "/dev/shm/grappe-%s-%s", cfg->name,
		 tag ? tag : "ram");
	fd = open(r->shm_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)r->m->mem.size) < 0) {
		snprintf(err, errlen, "%s: %s", r->shm_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* Same address: KVM's memory slots keep pointing at it. */
	p = mmap(r->m->mem.host, r->m->mem.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "mmap %s: %s", r->shm_path, strerror(errno));
		return -1;
	}
	return 0;
}

int cluster_ram_create(struct cluster_ram **out, struct machine *m, const struct vm_config *cfg,
		       struct fabric *f, char *err, size_t errlen)
{
	struct cluster_ram *r = calloc(1, sizeof(*r));
	const char *mode = getenv("GRAPPE_RAM");

	*out = r;
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->m = m;
	r->f = f;

	if (mode && !strcmp(mode, "shared")) {
		r->shared = true;
		return map_shared(r, cfg, err, errlen);
	}
	return start_dsm(r, cfg, err, errlen);
}

bool cluster_ram_owns_type(uint16_t type)
{
	return type == DSM_FABRIC_TYPE;
}

void cluster_ram_receive(struct cluster_ram *r, unsigned src, uint16_t type, uint64_t req_id,
			 const void *payload, size_t len)
{
	if (r && r->dsm)
		dsm_fabric_receive(r->dsm, src, payload, len);
}

void cluster_ram_peer_down(struct cluster_ram *r, unsigned peer)
{
	if (r && r->dsm)
		dsm_peer_down(r->dsm, peer, "the fabric lost it");
}

void cluster_ram_quiesce(struct cluster_ram *r)
{
	if (r && r->dsm)
		dsm_node_stop(r->dsm);
}

/*
 * One line per node when it leaves: what its memory traffic was, and
 * whether its cache bound was reached (a run under a memory limit shows
 * its evictions here; docs/cluster.md).
 */
static void log_summary(struct cluster_ram *r)
{
	struct dsm_stats st;

	dsm_node_stats(r->dsm, &st);
	fprintf(stderr, "grappe-node %u: dsm: faults read %llu write %llu upgrade %llu, "
		"pages in %llu out %llu, evictions %llu (write-backs %llu), cache max %llu "
		"pages\n", r->m->pl.self, (unsigned long long)st.fault_read_miss,
		(unsigned long long)st.fault_write_miss, (unsigned long long)st.fault_upgrade,
		(unsigned long long)st.pages_rx, (unsigned long long)st.pages_tx,
		(unsigned long long)(st.evict_s + st.evict_m), (unsigned long long)st.evict_m,
		(unsigned long long)st.cache_max);
	fprintf(stderr, "grappe-node %u: dsm: bursts %llu, grants %llu (hot %llu), yields %llu, "
		"refetched %llu, held back %llu ms in all, fetches %llu taking %llu ms "
		"(fastest %llu us)\n", r->m->pl.self, (unsigned long long)st.bursts,
		(unsigned long long)st.burst_grants, (unsigned long long)st.hot_grants,
		(unsigned long long)st.yields, (unsigned long long)st.refetched,
		(unsigned long long)st.held_ns / 1000000, (unsigned long long)st.fetches,
		(unsigned long long)st.fetch_total_ns / 1000000,
		(unsigned long long)st.fetch_ns / 1000);
}

void cluster_ram_destroy(struct cluster_ram *r)
{
	if (!r)
		return;
	if (r->dsm) {
		machine_set_idle_hook(r->m, NULL, NULL, NULL);
		r->m->stats_hook = NULL;
		r->m->quiesce_hook = NULL;
		dsm_node_stop(r->dsm);
		log_summary(r);
		dsm_node_destroy(r->dsm);
	}
	/* The first node to leave removes the name; mappings stay valid. */
	if (r->shared)
		unlink(r->shm_path);
	free(r);
}
