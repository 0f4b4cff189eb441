// SPDX-License-Identifier: MIT
/* A node's stores and volumes: see volume_host.h and docs/volume.md. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "blockdev/file_store.h"
#include "blockdev/lease_coord.h"
#include "blockdev/lease_reader.h"
#include "blockdev/store_client.h"
#include "blockdev/store_server.h"
#include "blockdev/volume_layout.h"
#include "vmm/volume_host.h"

struct volume_host;

/* What a volume's probe needs to reopen its remote stores. */
struct vh_volume {
	struct volume_host *vh;
	const struct vm_volume *v;
};

struct volume_host {
	struct volume_host_config c;
	struct vh_volume vols[VM_MAX_VOLUMES];
	/* Stores this node holds, until a volume or the server takes them. */
	struct blockdev *local[VM_MAX_VOLUMES][VM_MAX_STORES];
	unsigned nr_local;
	/* The I/O node's disks, served to the nodes that serve their queues. */
	struct blockdev *disk_bd[VM_MAX_DISKS];
	char disk_name[VM_MAX_DISKS][STORE_MSG_NAME_MAX + 1];
	unsigned nr_disks;
	struct store_server *srv;
	struct store_client *cli;
	/*
	 * Read leases (docs/volume.md, "Read leases"), by volume index, which
	 * is the id in their messages: the coordinator on the I/O node, the
	 * reader on a serving node that holds a store. Set once (atomic), read
	 * by the fabric thread, freed after the fabric.
	 */
	struct lease_coord *coord[VM_MAX_VOLUMES];
	struct lease_reader *reader[VM_MAX_VOLUMES];
	/* The store protocol as the server and client see it. */
	store_send_fn send;
	void *send_ctx;
};

static void vh_log(struct volume_host *vh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vh_log(struct volume_host *vh, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (vh->c.log)
		vh->c.log(vh->c.log_ctx, msg);
	else
		fprintf(stderr, "grappe-node: %s\n", msg);
}

static void log_cb(void *ctx, const char *msg)
{
	vh_log(ctx, "%s", msg);
}

static int send_cb(void *ctx, unsigned dst, uint16_t type, uint64_t req_id,
		   const struct iovec *iov, int iovcnt)
{
	struct volume_host *vh = ctx;

	if (!vh->send)
		return -ENOTCONN;
	return vh->send(vh->send_ctx, dst, type, req_id, iov, iovcnt);
}

/* The disk's cache mode applies to the volume's stores. */
static enum file_store_cache store_cache(const struct vm_config *cfg, const char *volume)
{
	static const enum file_store_cache map[] = {
		[VM_DISK_CACHE_DEFAULT] = FILE_STORE_WRITEBACK,
		[VM_DISK_CACHE_NONE] = FILE_STORE_NONE,
		[VM_DISK_CACHE_WRITEBACK] = FILE_STORE_WRITEBACK,
		[VM_DISK_CACHE_WRITETHROUGH] = FILE_STORE_WRITETHROUGH,
		[VM_DISK_CACHE_DIRECTSYNC] = FILE_STORE_DIRECTSYNC,
		[VM_DISK_CACHE_UNSAFE] = FILE_STORE_UNSAFE,
	};

	for (unsigned i = 0; i < cfg->nr_disks; i++)
		if (cfg->disks[i].type == VM_DISK_VOLUME && !strcmp(cfg->disks[i].volume, volume))
			return map[cfg->disks[i].cache];
	return FILE_STORE_WRITEBACK;
}

/*
 * A store file that does not exist yet is created sparse at the size the
 * layout needs (an empty one is grown to it): the volume then finds an
 * all-zero header and formats it. An existing non-empty file or a device is
 * left as it is — the volume decides whether it is ours.
 */
static int prepare_file(const char *path, uint64_t bytes, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (stat(path, &st) == 0 && (!S_ISREG(st.st_mode) || st.st_size > 0))
		return 0;
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int open_local(struct volume_host *vh, unsigned vi, char *err, size_t errlen)
{
	const struct vm_volume *v = &vh->c.cfg->volumes[vi];
	struct file_store_opts fo = { .cache = store_cache(vh->c.cfg, v->name) };
	struct vlayout l;
	char why[384];

	if (vlayout_init(&l, v->size, v->chunk, v->replicas, v->nr_stores, why, sizeof(why))) {
		snprintf(err, errlen, "%s:%ld: volume %s: %s", vh->c.cfg->source, v->line, v->name, why);
		return -1;
	}
	for (unsigned s = 0; s < v->nr_stores; s++) {
		const struct vm_volume_store *st = &v->stores[s];

		if (st->node != vh->c.self)
			continue;
		if (prepare_file(st->path, vlayout_store_bytes(&l, s), why, sizeof(why)) ||
		    file_store_open(st->path, &fo, &vh->local[vi][s], why, sizeof(why))) {
			snprintf(err, errlen, "%s:%ld: volume %s, store %u: %s", vh->c.cfg->source,
				 st->line, v->name, s, why);
			return -1;
		}
		vh->nr_local++;
	}
	return 0;
}

int volume_host_create(struct volume_host **out, const struct volume_host_config *c,
		       char *err, size_t errlen)
{
	struct volume_host *vh = calloc(1, sizeof(*vh));

	*out = vh;
	if (!vh) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	vh->c = *c;
	for (unsigned vi = 0; vi < c->cfg->nr_volumes; vi++)
		if (open_local(vh, vi, err, errlen))
			return -1;
	return 0;
}

bool volume_host_serves(const struct volume_host *vh)
{
	return vh && vh->nr_local && vh->c.self != vh->c.io_node;
}

int volume_host_export_disk(struct volume_host *vh, const char *target, struct blockdev *bd,
			    char *err, size_t errlen)
{
	char name[STORE_MSG_NAME_MAX + 1];
	int n = snprintf(name, sizeof(name), "disk/%s", target);

	if (n < 0 || (size_t)n >= sizeof(name) || !store_msg_name_ok(name, (size_t)n) ||
	    vh->nr_disks == VM_MAX_DISKS) {
		snprintf(err, errlen, "disk %s: cannot be served to other nodes (name or count)",
			 target);
		return -1;
	}
	memcpy(vh->disk_name[vh->nr_disks], name, (size_t)n + 1);
	vh->disk_bd[vh->nr_disks++] = bd;
	return 0;
}

/* The volume a disk is on, or -1 for a file or block disk. */
static int disk_volume(const struct volume_host *vh, const char *target)
{
	const struct vm_config *cfg = vh->c.cfg;

	for (unsigned i = 0; i < cfg->nr_disks; i++)
		if (cfg->disks[i].type == VM_DISK_VOLUME && !strcmp(cfg->disks[i].target, target)) {
			const struct vm_volume *v = vm_config_volume(cfg, cfg->disks[i].volume);

			return v ? (int)(v - cfg->volumes) : -1;
		}
	return -1;
}

/*
 * A serving node that holds stores of the disk's volume reads them itself
 * under read leases; everything else still goes to the I/O node (remote).
 */
static int wrap_reader(struct volume_host *vh, unsigned io_node, unsigned vi,
		       struct blockdev **bd, char *err, size_t errlen)
{
	const struct vm_volume *v = &vh->c.cfg->volumes[vi];
	struct lease_reader_config rc = {
		.volume = vi, .size = v->size, .chunk_size = v->chunk, .stores = v->nr_stores,
		.replicas = v->replicas, .remote = *bd, .coordinator = io_node,
		.send = send_cb, .log = log_cb, .ctx = vh,
	};
	struct lease_reader *lr;
	bool any = false;

	for (unsigned s = 0; s < v->nr_stores; s++) {
		rc.local[s] = vh->local[vi][s];
		any |= rc.local[s] != NULL;
	}
	/* GRAPPE_NO_READ_LEASES=1: every read through the I/O node, as before (a comparison aid). */
	if (!any || __atomic_load_n(&vh->reader[vi], __ATOMIC_ACQUIRE) ||
	    getenv("GRAPPE_NO_READ_LEASES"))
		return 0;
	if (lease_reader_create(&rc, &lr, err, errlen))
		return -1;
	__atomic_store_n(&vh->reader[vi], lr, __ATOMIC_RELEASE);
	*bd = lease_reader_blockdev(lr);
	return 0;
}

int volume_host_open_disk(struct volume_host *vh, unsigned io_node, const char *target,
			  struct blockdev **out, char *err, size_t errlen)
{
	char name[STORE_MSG_NAME_MAX + 1];
	int vi = disk_volume(vh, target);

	snprintf(name, sizeof(name), "disk/%s", target);
	if (!vh->cli) {
		snprintf(err, errlen, "no fabric");
		return -1;
	}
	if (store_client_open(vh->cli, io_node, name, out, err, errlen))
		return -1;
	if (vi >= 0 && wrap_reader(vh, io_node, (unsigned)vi, out, err, errlen)) {
		blockdev_close(*out);
		return -1;
	}
	return 0;
}

static void store_name(char *buf, size_t len, const struct vm_volume *v, unsigned s)
{
	snprintf(buf, len, "%s/%u", v->name, s);
}

int volume_host_set_transport(struct volume_host *vh, store_send_fn send, void *ctx,
			      char *err, size_t errlen)
{
	/* Disk queues on other nodes put the guest's whole disk traffic through this server. */
	struct store_server_config sc = { .send = send_cb, .log = log_cb, .ctx = vh,
					  .workers = vh->nr_disks ? 4 : 0 };
	struct store_client_config cc = { .send = send_cb, .log = log_cb, .ctx = vh };
	char why[256], name[STORE_MSG_NAME_MAX];

	vh->send = send;
	vh->send_ctx = ctx;
	/*
	 * Every node of a cluster has a client: the I/O node for the volumes'
	 * remote stores, the others for the disks whose queues they serve.
	 */
	if (store_client_create(&vh->cli, &cc, why, sizeof(why))) {
		snprintf(err, errlen, "volume stores: %s", why);
		return -1;
	}
	if (vh->c.self == vh->c.io_node ? !vh->nr_disks : !vh->nr_local)
		return 0;
	if (store_server_create(&vh->srv, &sc, why, sizeof(why))) {
		snprintf(err, errlen, "volume stores: %s", why);
		return -1;
	}
	for (unsigned i = 0; i < vh->nr_disks; i++)
		if (store_server_export(vh->srv, vh->disk_name[i], vh->disk_bd[i])) {
			snprintf(err, errlen, "cannot serve %s to other nodes", vh->disk_name[i]);
			return -1;
		}
	for (unsigned vi = 0; vi < vh->c.cfg->nr_volumes; vi++) {
		const struct vm_volume *v = &vh->c.cfg->volumes[vi];

		for (unsigned s = 0; s < v->nr_stores; s++) {
			if (!vh->local[vi][s])
				continue;
			store_name(name, sizeof(name), v, s);
			if (store_server_export(vh->srv, name, vh->local[vi][s])) {
				snprintf(err, errlen, "volume %s: cannot serve store %u", v->name, s);
				return -1;
			}
		}
	}
	return 0;
}

/* A lease message, to the coordinator or the reader of the volume it names. */
static void lease_receive(struct volume_host *vh, unsigned src, uint16_t type,
			  const void *payload, size_t len)
{
	struct lease_msg m;
	const char *why;
	void *to = NULL;

	if (!lease_msg_decode(type, payload, len, &m, &why)) {
		why = "no such volume here";
		if (m.volume < VM_MAX_VOLUMES)
			to = lease_msg_to_coordinator(type)
				? (void *)__atomic_load_n(&vh->coord[m.volume], __ATOMIC_ACQUIRE)
				: (void *)__atomic_load_n(&vh->reader[m.volume], __ATOMIC_ACQUIRE);
	}
	if (!to)
		vh_log(vh, "dropped a %s from node %u: %s", lease_msg_type_name(type), src, why);
	else if (lease_msg_to_coordinator(type))
		lease_coord_receive(to, src, type, payload, len);
	else
		lease_reader_receive(to, src, type, payload, len);
}

void volume_host_receive(struct volume_host *vh, unsigned src, uint16_t type, uint64_t req_id,
			 const void *payload, size_t len)
{
	if (lease_msg_owns_type(type)) {
		lease_receive(vh, src, type, payload, len);
		return;
	}
	if (type == STORE_MSG_REPLY) {
		if (vh->cli)
			store_client_receive(vh->cli, src, type, req_id, payload, len);
		else
			vh_log(vh, "dropped a store reply from node %u: this node asked nothing", src);
		return;
	}
	if (vh->srv)
		store_server_receive(vh->srv, src, type, req_id, payload, len);
	else
		vh_log(vh, "dropped a store request (type 0x%x) from node %u: this node serves no "
		       "store", type, src);
}

void volume_host_peer_down(struct volume_host *vh, unsigned node)
{
	if (vh->cli)
		store_client_peer_down(vh->cli, node);
	if (vh->srv)
		store_server_peer_down(vh->srv, node);
	for (unsigned vi = 0; vi < VM_MAX_VOLUMES; vi++) {
		struct lease_coord *lc = __atomic_load_n(&vh->coord[vi], __ATOMIC_ACQUIRE);
		struct lease_reader *lr = __atomic_load_n(&vh->reader[vi], __ATOMIC_ACQUIRE);

		if (lc)
			lease_coord_peer_down(lc, node);
		if (lr)
			lease_reader_peer_down(lr, node);
	}
}

static unsigned volume_index(const struct volume_host *vh, const struct vm_volume *v)
{
	return (unsigned)(v - vh->c.cfg->volumes);
}

/*
 * The volume's probe, for a failed store (volume_config.reopen): a store on
 * this node is probed as it is (its device may answer again); a store on
 * another node that was never opened (its node did not answer when the
 * volume opened), or whose connection failed for good, is opened again
 * through the store client. Runs on the volume's maintenance thread.
 */
static int reopen_store(void *ctx, unsigned idx, struct blockdev *cur, struct blockdev **out,
			char *why, size_t whylen)
{
	struct vh_volume *hv = ctx;
	struct volume_host *vh = hv->vh;
	const struct vm_volume_store *st = &hv->v->stores[idx];
	char name[STORE_MSG_NAME_MAX];

	*out = NULL;
	if (st->node == vh->c.self)
		return 0;
	if (!vh->cli) {
		snprintf(why, whylen, "no fabric to reach node %u", st->node);
		return -1;
	}
	store_name(name, sizeof(name), hv->v, idx);
	return store_client_reopen(vh->cli, st->node, name, cur, out, why, whylen);
}

/* The stores of v: this node's directly, the others' through the client. */
static int gather_stores(struct volume_host *vh, const struct vm_volume *v,
			 struct blockdev **bds, unsigned *local, char *err, size_t errlen)
{
	unsigned vi = volume_index(vh, v);
	char name[STORE_MSG_NAME_MAX], why[384];

	*local = VOLUME_NO_LOCAL;
	for (unsigned s = 0; s < v->nr_stores; s++) {
		const struct vm_volume_store *st = &v->stores[s];

		if (st->node == vh->c.self) {
			bds[s] = vh->local[vi][s];
			vh->local[vi][s] = NULL;
			if (*local == VOLUME_NO_LOCAL)
				*local = s;
			continue;
		}
		store_name(name, sizeof(name), v, s);
		if (!vh->cli || store_client_open(vh->cli, st->node, name, &bds[s], why, sizeof(why))) {
			/* The volume runs degraded; its probe opens it when the node answers. */
			vh_log(vh, "volume %s: store %u on node %u (%s) is not available: %s; "
			       "retried every second", v->name, s, st->node, st->path,
			       vh->cli ? why : "no fabric");
			bds[s] = NULL;
		}
	}
	(void)err;
	(void)errlen;
	return 0;
}

/*
 * I/O node: the volume coordinates the read leases of the nodes that hold
 * its other stores (they read their own copies under them). Before the
 * guest starts, so the first lease request finds it.
 */
static int start_leases(struct volume_host *vh, const struct vm_volume *v, struct volume *vol,
			char *err, size_t errlen)
{
	unsigned vi = volume_index(vh, v);
	struct lease_coord_config cc = { .volume = vi, .stores = v->nr_stores, .send = send_cb,
					 .log = log_cb, .ctx = vh };
	struct lease_coord *lc = __atomic_load_n(&vh->coord[vi], __ATOMIC_ACQUIRE);
	struct volume_stats st;
	bool any = false;

	if (lc) {
		/* Opened again: the same coordinator, bound to the new volume. */
		volume_set_leases(vol, lc);
		return 0;
	}
	volume_stats(vol, &st);
	cc.chunks = st.chunks;
	for (unsigned s = 0; s < v->nr_stores; s++) {
		bool remote = v->stores[s].node != vh->c.self;

		cc.holder[s] = remote ? v->stores[s].node : LEASE_NO_HOLDER;
		any |= remote;
	}
	if (!any)
		return 0;
	if (lease_coord_create(&cc, &lc, err, errlen))
		return -1;
	__atomic_store_n(&vh->coord[vi], lc, __ATOMIC_RELEASE);
	volume_set_leases(vol, lc);
	return 0;
}

int volume_host_open(struct volume_host *vh, const struct vm_volume *v, struct volume **out,
		     char *err, size_t errlen)
{
	struct blockdev *bds[VM_MAX_STORES] = { 0 };
	const char *names[VM_MAX_STORES];
	char labels[VM_MAX_STORES][96];
	struct volume_config vc = {
		.name = v->name, .size = v->size, .chunk_size = v->chunk,
		.stores = v->nr_stores, .replicas = v->replicas, .store_names = names,
		.log = log_cb, .log_ctx = vh,
	};
	struct vh_volume *hv = &vh->vols[volume_index(vh, v)];
	unsigned local;
	char why[512];

	*hv = (struct vh_volume){ .vh = vh, .v = v };
	vc.reopen = reopen_store;
	vc.reopen_ctx = hv;
	for (unsigned s = 0; s < v->nr_stores; s++) {
		snprintf(labels[s], sizeof(labels[s]), "node %u:%s", v->stores[s].node,
			 v->stores[s].path);
		names[s] = labels[s];
	}
	if (gather_stores(vh, v, bds, &local, err, errlen))
		return -1;
	if (volume_open(&vc, bds, local, out, why, sizeof(why))) {
		for (unsigned s = 0; s < v->nr_stores; s++)
			blockdev_close(bds[s]);
		snprintf(err, errlen, "%s:%ld: volume %s: %s", vh->c.cfg->source, v->line, v->name,
			 why);
		return -1;
	}
	if (start_leases(vh, v, *out, why, sizeof(why))) {
		volume_close(*out);
		*out = NULL;
		snprintf(err, errlen, "volume %s: %s", v->name, why);
		return -1;
	}
	return 0;
}

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

static struct json_object *reader_json(const struct vm_volume *v, struct lease_reader *lr)
{
	struct json_object *o = json_object_new_object();
	struct lease_reader_stats st;

	lease_reader_stats(lr, &st);
	json_object_object_add(o, "volume", json_object_new_string(v->name));
	add_u64(o, "reads_local", st.reads_local);
	add_u64(o, "bytes_local", st.bytes_local);
	add_u64(o, "reads_forwarded", st.reads_forwarded);
	add_u64(o, "bytes_forwarded", st.bytes_forwarded);
	add_u64(o, "local_errors", st.local_errors);
	add_u64(o, "late_reads", st.late_reads);
	add_u64(o, "leases", st.leases);
	add_u64(o, "granted", st.granted);
	add_u64(o, "refused", st.refused);
	add_u64(o, "revoked", st.revoked);
	return o;
}

static struct json_object *coord_json(const struct vm_volume *v, struct lease_coord *lc)
{
	struct json_object *o = json_object_new_object();
	struct lease_coord_stats st;

	lease_coord_stats(lc, &st);
	json_object_object_add(o, "volume", json_object_new_string(v->name));
	add_u64(o, "leases", st.leases);
	add_u64(o, "granted", st.granted);
	add_u64(o, "refused", st.refused);
	add_u64(o, "revoked", st.revoked);
	return o;
}

void volume_host_stats_json(void *ctx, struct json_object *out)
{
	struct volume_host *vh = ctx;
	struct json_object *reads = json_object_new_array(), *leases = json_object_new_array();

	for (unsigned vi = 0; vi < vh->c.cfg->nr_volumes && vi < VM_MAX_VOLUMES; vi++) {
		struct lease_reader *lr = __atomic_load_n(&vh->reader[vi], __ATOMIC_ACQUIRE);
		struct lease_coord *lc = __atomic_load_n(&vh->coord[vi], __ATOMIC_ACQUIRE);

		if (lr)
			json_object_array_add(reads, reader_json(&vh->c.cfg->volumes[vi], lr));
		if (lc)
			json_object_array_add(leases, coord_json(&vh->c.cfg->volumes[vi], lc));
	}
	json_object_object_add(out, "local_reads", reads);
	json_object_object_add(out, "read_leases", leases);
}

void volume_host_shutdown(struct volume_host *vh)
{
	if (vh->srv)
		store_server_shutdown(vh->srv);
	if (vh->cli)
		store_client_shutdown(vh->cli);
}

void volume_host_destroy(struct volume_host *vh)
{
	if (!vh)
		return;
	volume_host_shutdown(vh);
	if (vh->srv)
		store_server_destroy(vh->srv);
	if (vh->cli)
		store_client_destroy(vh->cli);
	/* The fabric is gone: no lease message can arrive. Volumes are closed (detached). */
	for (unsigned vi = 0; vi < VM_MAX_VOLUMES; vi++) {
		lease_coord_destroy(vh->coord[vi]);
		lease_reader_destroy(vh->reader[vi]);
	}
	/* The server and the readers only borrowed them. */
	for (unsigned vi = 0; vi < VM_MAX_VOLUMES; vi++)
		for (unsigned s = 0; s < VM_MAX_STORES; s++)
			blockdev_close(vh->local[vi][s]);
	free(vh);
}
