// SPDX-License-Identifier: MIT
/*
 * grappe-node: one node of a grappe VM. Today a node runs the whole guest
 * on this host; the cluster issue splits it. Exit status: 0 after a guest
 * poweroff, 1 when the guest crashed or the VMM failed, 2 for bad input.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/cluster.h"
#include "vmm/machine.h"
#include "vmm/node_control.h"
#include "vmm/vm_config.h"

/* Exit status asking `grappe run` to restart every node (on_reboot=restart). */
#define NODE_EXIT_RESTART 3

struct node {
	struct vm_config *cfg;
	struct cluster_opts copts;
	bool clustered;
	struct cluster *cluster;
	struct volume_host *volumes;    /* stores and volumes: docs/volume.md */
	struct node_control ctl;
	struct machine m;
	int console_fd;
	int input_fd;
	bool machine_live;
	pthread_mutex_t lock;   /* guards m while the input/signal threads use it */
	bool quit;
	struct termios saved_tty;
	bool tty_raw;
};

static void warn_cb(void *ctx, const char *msg)
{
	fprintf(stderr, "grappe-node: %s\n", msg);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: grappe-node [--node N | --listen ADDR] [--secret FILE]\n"
		   "                   [--peer N=ADDR]... VM.xml\n"
		   "Runs the virtual machine that the libvirt domain XML describes, or, when\n"
		   "its metadata has a <grappe:cluster>, this host's node of it:\n"
		   "  --node N       run node N of the cluster\n"
		   "  --listen ADDR  run the node whose address is ADDR (host:port)\n"
		   "  --secret FILE  the cluster secret (32 bytes, mode 0600)\n"
		   "  --peer N=ADDR  reach node N at ADDR instead of the XML's address\n");
}

/* Serving node: a disk of the I/O node, for the queues this node serves. */
static int open_io_disk(void *ctx, const char *target, struct blockdev **out, char *err,
			size_t errlen)
{
	struct node *n = ctx;

	return volume_host_open_disk(n->volumes, n->m.pl.io_node, target, out, err, errlen);
}

/* I/O node: its disks are served to the nodes that serve some of their queues. */
static int export_disks(struct node *n, char *err, size_t errlen)
{
	if (!n->m.vqr || n->copts.self != n->m.pl.io_node)
		return 0;
	for (unsigned i = 0; i < n->m.nr_disks; i++)
		if (volume_host_export_disk(n->volumes, n->cfg->disks[i].target, n->m.disks[i]->bd,
					    err, errlen))
			return -1;
	return 0;
}

/* The volume host's messages, named by node like the rest of a cluster's log. */
static void volumes_log(void *ctx, const char *msg)
{
	struct node *n = ctx;

	fprintf(stderr, "grappe-node %u: %s\n", n->copts.self, msg);
}

/* Starts this node's part: machine, then fabric and DSM, then the kernel. */
static int bring_up(struct node *n, char *err, size_t errlen)
{
	struct machine_placement pl;
	struct volume_host_config vc = { .cfg = n->cfg, .self = n->copts.self,
					  .log = volumes_log, .log_ctx = n };

	machine_placement_init(&pl, n->cfg, n->copts.self);
	if (machine_create(&n->m, n->cfg, &pl, n->console_fd, err, errlen))
		return -1;
	vc.io_node = pl.io_node;
	/* In a cluster the stores also carry the disks whose queues other nodes serve. */
	if ((n->cfg->nr_volumes || n->clustered) &&
	    volume_host_create(&n->volumes, &vc, err, errlen))
		return -1;
	if (n->volumes && export_disks(n, err, errlen))
		return -1;
	n->copts.volumes = n->volumes;
	if (n->volumes) {
		n->m.volume_stats_hook = volume_host_stats_json;
		n->m.volume_stats_ctx = n->volumes;
	}
	n->m.open_disk = open_io_disk;
	n->m.open_disk_ctx = n;
	if (n->clustered && cluster_attach(&n->cluster, &n->m, n->cfg, &n->copts, err, errlen))
		return -1;
	if (n->volumes && n->copts.self == pl.io_node &&
	    machine_attach_volumes(&n->m, n->volumes, err, errlen))
		return -1;
	if (machine_load(&n->m, err, errlen))
		return -1;
	if (n->clustered && cluster_start_guest(n->cluster, err, errlen))
		return -1;
	return machine_start(&n->m, err, errlen);
}

/* A node that serves stores waits this long for the I/O node to close its volumes. */
#define VOLUME_CLOSE_WAIT_MS 5000

static void tear_down(struct node *n)
{
	/* vCPUs first: they may be waiting on the fabric. */
	machine_stop_vcpus(&n->m);
	/* The queues served here: their workers use the fabric and guest RAM. */
	machine_stop_queues(&n->m);
	/* Volumes are closed (flushed, marked clean) while every store is reachable. */
	machine_detach_volumes(&n->m);
	if (n->cluster && volume_host_serves(n->volumes))
		cluster_wait_peer_gone(n->cluster, n->m.pl.io_node, VOLUME_CLOSE_WAIT_MS);
	if (n->cluster)
		cluster_detach(n->cluster);
	n->cluster = NULL;
	n->m.volume_stats_hook = NULL;
	volume_host_destroy(n->volumes);
	n->volumes = NULL;
	n->copts.volumes = NULL;
	machine_destroy(&n->m);
}

static int open_console(struct node *n)
{
	const struct vm_config *cfg = n->cfg;

	n->input_fd = -1;
	switch (cfg->serial) {
	case VM_SERIAL_STDIO:
		n->input_fd = STDIN_FILENO;
		return STDOUT_FILENO;
	case VM_SERIAL_FILE: {
		int fd = open(cfg->serial_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		if (fd < 0)
			fprintf(stderr, "grappe-node: %s: %s\n", cfg->serial_path, strerror(errno));
		return fd < 0 ? -2 : fd;
	}
	case VM_SERIAL_PTY: {
		int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);

		if (fd < 0 || grantpt(fd) || unlockpt(fd)) {
			fprintf(stderr, "grappe-node: cannot open a pty: %s\n", strerror(errno));
			return -2;
		}
		fprintf(stderr, "grappe-node: serial console on %s\n", ptsname(fd));
		n->input_fd = fd;
		return fd;
	}
	default:
		return -1;
	}
}

/* Console input: bounded polls so the thread notices the end of the VM. */
static void *input_thread(void *arg)
{
	struct node *n = arg;
	uint8_t buf[64];
	size_t have = 0, off = 0;

	while (!__atomic_load_n(&n->quit, __ATOMIC_ACQUIRE)) {
		struct pollfd pfd = { .fd = n->input_fd, .events = POLLIN };

		if (off < have) {
			size_t took = 0;

			pthread_mutex_lock(&n->lock);
			if (n->machine_live)
				took = machine_console_input(&n->m, buf + off, have - off);
			pthread_mutex_unlock(&n->lock);
			off += took;
			if (!took)
				usleep(2000); /* the guest has not drained its FIFO yet */
			continue;
		}
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		{
			ssize_t r = read(n->input_fd, buf, sizeof(buf));

			if (r <= 0)
				break; /* end of input: the guest simply gets no more */
			have = (size_t)r;
			off = 0;
		}
	}
	return NULL;
}

static void *signal_thread(void *arg)
{
	struct node *n = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	while (sigwait(&set, &sig) == 0) {
		char why[64];

		snprintf(why, sizeof(why), "stopped by signal %d", sig);
		pthread_mutex_lock(&n->lock);
		n->quit = true;
		if (n->machine_live)
			machine_stop(&n->m, why);
		pthread_mutex_unlock(&n->lock);
	}
	return NULL;
}

static void tty_raw(struct node *n)
{
	struct termios t;

	if (n->input_fd != STDIN_FILENO || !isatty(STDIN_FILENO) ||
	    tcgetattr(STDIN_FILENO, &n->saved_tty))
		return;
	t = n->saved_tty;
	/* Keys go to the guest; ^C still stops the VM. */
	t.c_lflag &= ~(ICANON | ECHO);
	t.c_iflag &= ~(ICRNL | IXON);
	tcsetattr(STDIN_FILENO, TCSANOW, &t);
	n->tty_raw = true;
}

static void tty_restore(struct node *n)
{
	if (n->tty_raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &n->saved_tty);
}

static const char *node_tag(struct node *n)
{
	static __thread char tag[24];

	snprintf(tag, sizeof(tag), " %u", n->copts.self);
	return tag;
}

/* "N=ADDR" */
static int parse_peer(struct node *n, const char *arg)
{
	char *end;
	unsigned long id = strtoul(arg, &end, 10);

	if (end == arg || *end != '=' || id >= VM_MAX_NODES || !end[1])
		return -1;
	n->copts.peer_addr[id] = end + 1;
	return 0;
}

/* Which node am I: --node, or the node whose address --listen names. */
static int pick_node(struct node *n, long node, const char *listen)
{
	const struct vm_cluster *c = &n->cfg->cluster;

	if (listen) {
		for (unsigned i = 0; i < c->nr_nodes; i++)
			if (!strcmp(c->nodes[i].address, listen))
				node = (long)i;
		if (node < 0) {
			fprintf(stderr, "grappe-node: --listen %s: no <grappe:node> has that address\n",
				listen);
			return -1;
		}
	}
	if (node < 0)
		node = 0;
	if ((unsigned long)node >= c->nr_nodes) {
		fprintf(stderr, "grappe-node: --node %ld: the cluster has %u node(s)\n", node,
			c->nr_nodes);
		return -1;
	}
	n->copts.self = (unsigned)node;
	return 0;
}

/* What to do after an event, by the domain's on_* settings. */
static enum vm_action action_for(const struct vm_config *cfg, enum machine_event ev)
{
	switch (ev) {
	case MACHINE_EV_POWEROFF: return cfg->on_poweroff;
	case MACHINE_EV_RESET:
	case MACHINE_EV_TRIPLE_FAULT: return cfg->on_reboot;
	case MACHINE_EV_PANIC: return cfg->on_crash;
	default: return VM_ACTION_DESTROY;
	}
}

static int exit_status(enum machine_event ev)
{
	switch (ev) {
	case MACHINE_EV_POWEROFF:
	case MACHINE_EV_RESET:
	case MACHINE_EV_STOP:
		return 0;
	default:
		return 1;
	}
}

/* Runs the guest until an event ends it for good; returns the exit status. */
static int run_vm(struct node *n)
{
	char err[512];

	for (;;) {
		enum machine_event ev;
		enum vm_action act;

		pthread_mutex_lock(&n->lock);
		if (n->quit) {
			pthread_mutex_unlock(&n->lock);
			return 0;
		}
		if (bring_up(n, err, sizeof(err))) {
			n->machine_live = true; /* so destroy runs */
			pthread_mutex_unlock(&n->lock);
			fprintf(stderr, "grappe-node: %s\n", err);
			pthread_mutex_lock(&n->lock);
			tear_down(n);
			n->machine_live = false;
			pthread_mutex_unlock(&n->lock);
			return 1;
		}
		n->machine_live = true;
		pthread_mutex_unlock(&n->lock);

		ev = machine_run(&n->m);
		act = action_for(n->cfg, ev);
		if (ev != MACHINE_EV_POWEROFF)
			fprintf(stderr, "\ngrappe-node%s: %s: %s\n", n->clustered ? node_tag(n) : "",
				n->cfg->name, machine_event_message(&n->m));
		pthread_mutex_lock(&n->lock);
		tear_down(n);
		n->machine_live = false;
		pthread_mutex_unlock(&n->lock);

		if (ev == MACHINE_EV_ERROR || ev == MACHINE_EV_STOP)
			return exit_status(ev);
		if (act == VM_ACTION_RESTART || act == VM_ACTION_RENAME_RESTART) {
			/* A cluster restarts as a whole: the launcher starts every node again. */
			if (n->clustered)
				return NODE_EXIT_RESTART;
			fprintf(stderr, "grappe-node: %s: restarting\n", n->cfg->name);
			continue;
		}
		if (act == VM_ACTION_PRESERVE) {
			fprintf(stderr, "grappe-node: %s: stopped and preserved; "
				"send SIGTERM to end\n", n->cfg->name);
			while (!__atomic_load_n(&n->quit, __ATOMIC_ACQUIRE))
				pause();
		}
		return exit_status(ev);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "node", required_argument, NULL, 'n' },
		{ "listen", required_argument, NULL, 'l' },
		{ "secret", required_argument, NULL, 's' },
		{ "peer", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen = NULL;
	long node_id = -1;
	struct node n;
	char err[VM_CONFIG_ERR_LEN];
	pthread_t sig_thr, in_thr;
	bool in_started = false;
	sigset_t set;
	int c, status;

	memset(&n, 0, sizeof(n));
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		char *end;

		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'n':
			node_id = strtol(optarg, &end, 10);
			if (*end || end == optarg || node_id < 0) {
				fprintf(stderr, "grappe-node: --node needs a node number\n");
				return 2;
			}
			break;
		case 'l':
			listen = optarg;
			break;
		case 's':
			n.copts.secret_path = optarg;
			break;
		case 'p':
			if (parse_peer(&n, optarg)) {
				fprintf(stderr, "grappe-node: --peer needs N=HOST:PORT, got '%s'\n", optarg);
				return 2;
			}
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	pthread_mutex_init(&n.lock, NULL);
	if (vm_config_load(argv[optind], &n.cfg, err, warn_cb, NULL)) {
		fprintf(stderr, "grappe-node: %s\n", err);
		return 2;
	}
	if (vm_cluster_check(n.cfg, err)) {
		fprintf(stderr, "grappe-node: %s\n", err);
		vm_config_free(n.cfg);
		return 2;
	}
	n.clustered = n.cfg->cluster.nr_nodes > 0;
	if (n.clustered) {
		if (pick_node(&n, node_id, listen)) {
			vm_config_free(n.cfg);
			return 2;
		}
		if (!n.copts.secret_path)
			n.copts.secret_path = n.cfg->cluster.secret_path;
		if (!n.copts.secret_path) {
			fprintf(stderr, "grappe-node: a cluster node needs --secret FILE or "
				"secret='...' in <grappe:cluster>\n");
			vm_config_free(n.cfg);
			return 2;
		}
	} else if (node_id > 0 || listen) {
		fprintf(stderr, "grappe-node: --node/--listen need a <grappe:cluster> in the "
			"domain's metadata\n");
		vm_config_free(n.cfg);
		return 2;
	}
	if (!n.cfg->kernel) {
		fprintf(stderr, "grappe-node: %s: no <os><kernel> given; "
			"direct kernel boot is the only boot method so far\n", argv[optind]);
		vm_config_free(n.cfg);
		return 2;
	}
	/* In a cluster the devices, and so the console, are on the BSP's node. */
	if (n.clustered && n.copts.self != vm_cluster_node_of_cell(n.cfg, vm_config_vcpu_cell(n.cfg, 0)))
		n.cfg->serial = VM_SERIAL_NONE;
	n.console_fd = open_console(&n);
	if (n.console_fd == -2) {
		vm_config_free(n.cfg);
		return 2;
	}

	/* Signals are taken by one thread; every other thread blocks them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	pthread_create(&sig_thr, NULL, signal_thread, &n);
	pthread_detach(sig_thr);
	if (n.input_fd >= 0) {
		tty_raw(&n);
		in_started = pthread_create(&in_thr, NULL, input_thread, &n) == 0;
	}

	n.ctl = (struct node_control){ .lock = &n.lock, .live = &n.machine_live, .m = &n.m,
				       .cfg = n.cfg, .self = n.copts.self,
				       .nr_nodes = n.clustered ? n.cfg->cluster.nr_nodes : 1 };
	node_control_start(&n.ctl);

	status = run_vm(&n);

	node_control_stop(&n.ctl);

	__atomic_store_n(&n.quit, true, __ATOMIC_RELEASE);
	if (in_started)
		pthread_join(in_thr, NULL);
	tty_restore(&n);
	vm_config_free(n.cfg);
	return status;
}
