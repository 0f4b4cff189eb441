// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "vmm/node_control.h"

/* Runs fn on the live machine under the node's lock, or fails cleanly. */
#define WITH_MACHINE(nc, err, errlen, ...)                                   \
	do {                                                                     \
		int rc_ = 0;                                                     \
		pthread_mutex_lock((nc)->lock);                                  \
		if (!*(nc)->live) {                                              \
			snprintf(err, errlen, "the guest is not running");      \
			rc_ = -ESRCH;                                            \
		} else {                                                         \
			struct machine *m = (nc)->m;                             \
			__VA_ARGS__;                                             \
		}                                                                \
		pthread_mutex_unlock((nc)->lock);                                \
		return rc_;                                                      \
	} while (0)

static int query_status(void *ctx, struct control_status *out, char *err, size_t errlen)
{
	struct node_control *nc = ctx;

	memset(out, 0, sizeof(*out));
	out->node = nc->self;
	out->nr_nodes = nc->nr_nodes;
	snprintf(out->vm_name, sizeof(out->vm_name), "%s", nc->cfg->name);
	pthread_mutex_lock(nc->lock);
	if (!*nc->live || machine_stopping(nc->m))
		out->state = CONTROL_SHUTDOWN;
	else if (__atomic_load_n(&nc->m->paused, __ATOMIC_ACQUIRE))
		out->state = CONTROL_PAUSED;
	else
		out->state = CONTROL_RUNNING;
	pthread_mutex_unlock(nc->lock);
	return 0;
}

static int do_stop(void *ctx, char *err, size_t errlen)
{
	struct node_control *nc = ctx;

	WITH_MACHINE(nc, err, errlen, machine_pause(m, true));
}

static int do_cont(void *ctx, char *err, size_t errlen)
{
	struct node_control *nc = ctx;

	WITH_MACHINE(nc, err, errlen, machine_pause(m, false));
}

static int powerdown(void *ctx, char *err, size_t errlen)
{
	struct node_control *nc = ctx;

	WITH_MACHINE(nc, err, errlen, {
		if (!m->devices_ready) {
			snprintf(err, errlen, "the power button is on node %u (the I/O node)",
				 m->pl.io_node);
			rc_ = -EINVAL;
		} else {
			acpi_pm_power_button(&m->pm);
		}
	});
}

static int quit(void *ctx, char *err, size_t errlen)
{
	struct node_control *nc = ctx;

	WITH_MACHINE(nc, err, errlen, machine_stop(m, "quit (control socket)"));
}

static int query_cpus(void *ctx, struct control_cpu *cpus, unsigned max, unsigned *n,
		      char *err, size_t errlen)
{
	struct node_control *nc = ctx;

	*n = 0;
	WITH_MACHINE(nc, err, errlen, {
		for (unsigned i = 0; i < m->nr_vcpus && *n < max; i++) {
			struct vcpu *v = &m->vcpus[i];

			if (!v->m)
				continue;
			cpus[*n] = (struct control_cpu){
				.index = i, .node = nc->self,
				.cell = vm_config_vcpu_cell(nc->cfg, i), .socket = i,
				.thread_id = __atomic_load_n(&v->tid, __ATOMIC_RELAXED),
				.halted = __atomic_load_n(&v->halted, __ATOMIC_RELAXED),
				.exits = __atomic_load_n(&v->stats.exits, __ATOMIC_RELAXED),
			};
			(*n)++;
		}
	});
}

static struct json_object *vcpu_stats(struct machine *m)
{
	struct json_object *arr = json_object_new_array();

	for (unsigned i = 0; i < m->nr_vcpus; i++) {
		struct vcpu *v = &m->vcpus[i];
		struct json_object *o;

		if (!v->m)
			continue;
		o = json_object_new_object();
		json_object_object_add(o, "index", json_object_new_int64(i));
		json_object_object_add(o, "exits", json_object_new_int64((int64_t)v->stats.exits));
		json_object_object_add(o, "io", json_object_new_int64((int64_t)v->stats.pio));
		json_object_object_add(o, "mmio", json_object_new_int64((int64_t)v->stats.mmio));
		json_object_object_add(o, "lapic", json_object_new_int64((int64_t)v->stats.lapic));
		json_object_object_add(o, "halts", json_object_new_int64((int64_t)v->stats.hlt));
		json_object_object_add(o, "irqs", json_object_new_int64((int64_t)v->stats.irq_injected));
		json_object_array_add(arr, o);
	}
	return arr;
}

static void add_u64(struct json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

static struct json_object *replica_stats(const struct volume_replica_stats *r)
{
	static const char *const states[] = {
		[VOLUME_REPLICA_LIVE] = "live", [VOLUME_REPLICA_FAILED] = "failed",
		[VOLUME_REPLICA_RESYNCING] = "resyncing",
	};
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "state", json_object_new_string(states[r->state]));
	json_object_object_add(o, "attached", json_object_new_boolean(r->attached));
	add_u64(o, "chunks", r->chunks);
	add_u64(o, "chunks_stale", r->chunks_stale);
	add_u64(o, "chunks_resynced", r->chunks_resynced);
	add_u64(o, "bytes_read", r->bytes_read);
	add_u64(o, "bytes_written", r->bytes_written);
	add_u64(o, "errors", r->errors);
	return o;
}

/* The replicated volumes of the disks on this node (docs/volume.md). */
static struct json_object *volume_stats_json(struct machine *m)
{
	struct json_object *arr = json_object_new_array();

	for (unsigned i = 0; i < m->nr_disks; i++) {
		struct json_object *o, *reps;
		struct volume_stats *st;

		if (!m->disk_volume[i] || !(st = malloc(sizeof(*st))))
			continue;
		volume_stats(m->disk_volume[i], st);
		o = json_object_new_object();
		json_object_object_add(o, "disk", json_object_new_string(m->cfg->disks[i].target));
		json_object_object_add(o, "volume", json_object_new_string(m->cfg->disks[i].volume));
		json_object_object_add(o, "degraded", json_object_new_boolean(st->degraded));
		add_u64(o, "generation", st->generation);
		add_u64(o, "chunks", st->chunks);
		add_u64(o, "chunks_stale", st->chunks_stale);
		add_u64(o, "chunks_resynced", st->chunks_resynced);
		add_u64(o, "chunks_unavailable", st->chunks_unavailable);
		reps = json_object_new_array();
		for (unsigned r = 0; r < st->stores; r++)
			json_object_array_add(reps, replica_stats(&st->replica[r]));
		json_object_object_add(o, "stores", reps);
		json_object_array_add(arr, o);
		free(st);
	}
	return arr;
}

/* Disk queues this node serves for the I/O node (docs/cluster.md, "Disk queues"). */
static struct json_object *disk_queue_stats(struct machine *m)
{
	struct vq_remote_queue_stats st[NODE_MSG_VQ_MAX_DISKS];
	struct json_object *arr = json_object_new_array();
	unsigned n = vq_remote_stats(m->vqr, st, NODE_MSG_VQ_MAX_DISKS);

	for (unsigned i = 0; i < n; i++) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "disk",
				       json_object_new_string(m->cfg->disks[st[i].disk].target));
		add_u64(o, "queue", st[i].queue);
		add_u64(o, "requests", st[i].requests);
		add_u64(o, "local_notifies", st[i].local_notifies);
		add_u64(o, "forwarded_notifies", st[i].forwarded_notifies);
		add_u64(o, "msis", st[i].msis);
		add_u64(o, "irqs_forwarded", st[i].irqs_forwarded);
		json_object_array_add(arr, o);
	}
	return arr;
}

static int query_stats(void *ctx, struct json_object **out, char *err, size_t errlen)
{
	struct node_control *nc = ctx;

	*out = NULL;
	WITH_MACHINE(nc, err, errlen, {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "node", json_object_new_int64(nc->self));
		json_object_object_add(o, "vcpus", vcpu_stats(m));
		json_object_object_add(o, "volumes", volume_stats_json(m));
		json_object_object_add(o, "disk_queues", disk_queue_stats(m));
		if (m->stats_hook)
			m->stats_hook(m->stats_ctx, o);
		if (m->volume_stats_hook)
			m->volume_stats_hook(m->volume_stats_ctx, o);
		*out = o;
	});
}

void node_control_ops(struct node_control *nc, struct control_ops *ops)
{
	*ops = (struct control_ops){
		.query_status = query_status, .stop = do_stop, .cont = do_cont,
		.system_powerdown = powerdown, .quit = quit, .query_cpus = query_cpus,
		.query_stats = query_stats, .ctx = nc,
	};
}

void node_control_start(struct node_control *nc)
{
	struct control_ops ops;
	char path[512], err[256];

	node_control_ops(nc, &ops);
	if (control_node_socket_path(path, sizeof(path), nc->cfg->name, nc->self, err, sizeof(err)) ||
	    control_start(path, &ops, &nc->server, err, sizeof(err))) {
		fprintf(stderr, "grappe-node %u: no control socket: %s\n", nc->self, err);
		nc->server = NULL;
	}
}

void node_control_stop(struct node_control *nc)
{
	if (nc->server)
		control_stop(nc->server);
	nc->server = NULL;
}
