// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "mgmt/launcher.h"
#include "mgmt/netns.h"

/* A node that exits with this asks the launcher to restart the whole cluster. */
#define NODE_EXIT_RESTART 3

static bool split_host(const char *address, char *host, size_t len)
{
	const char *colon = strrchr(address, ':');
	size_t n;

	if (!colon)
		return false;
	n = (size_t)(colon - address);
	if (address[0] == '[' && n >= 2 && address[n - 1] == ']') {
		address++;
		n -= 2;
	}
	if (n >= len)
		return false;
	memcpy(host, address, n);
	host[n] = '\0';
	return true;
}

bool launcher_addr_is_local(const char *address)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	struct ifaddrs *ifs = NULL;
	char host[128];
	bool local = false;

	if (!split_host(address, host, sizeof(host)) || getaddrinfo(host, NULL, &hints, &res))
		return false;
	if (getifaddrs(&ifs)) {
		freeaddrinfo(res);
		return false;
	}
	for (struct addrinfo *a = res; a && !local; a = a->ai_next) {
		if (a->ai_family == AF_INET &&
		    (ntohl(((struct sockaddr_in *)a->ai_addr)->sin_addr.s_addr) >> 24) == 127)
			local = true;
		for (struct ifaddrs *i = ifs; i && !local; i = i->ifa_next) {
			if (!i->ifa_addr || i->ifa_addr->sa_family != a->ai_family)
				continue;
			if (a->ai_family == AF_INET)
				local = !memcmp(&((struct sockaddr_in *)i->ifa_addr)->sin_addr,
						&((struct sockaddr_in *)a->ai_addr)->sin_addr, 4);
			else if (a->ai_family == AF_INET6)
				local = !memcmp(&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr,
						&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr, 16);
		}
	}
	freeifaddrs(ifs);
	freeaddrinfo(res);
	return local;
}

/* A secret for a cluster that lives only on this machine, for this run. */
static int make_secret(char *path, size_t len)
{
	char dir[] = "/tmp/grappe-XXXXXX";
	unsigned char key[32];
	int fd, rnd;

	if (!mkdtemp(dir))
		return -1;
	snprintf(path, len, "%s/cluster.key", dir);
	rnd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (rnd < 0 || read(rnd, key, sizeof(key)) != (ssize_t)sizeof(key)) {
		if (rnd >= 0)
			close(rnd);
		return -1;
	}
	close(rnd);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, key, sizeof(key)) != (ssize_t)sizeof(key)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static void remove_secret(const char *path)
{
	char dir[512];

	unlink(path);
	snprintf(dir, sizeof(dir), "%s", path);
	if (strrchr(dir, '/')) {
		*strrchr(dir, '/') = '\0';
		rmdir(dir);
	}
}

/*
 * A cgroup has memory.max only when its parent delegates the memory
 * controller. systemd does that for the root; a bare cgroup2 mount (a
 * container, the lab) does not, so enable it ourselves, as a container
 * runtime would. The root cgroup may do so with processes in it.
 */
static int enable_memory_controller(void)
{
	int fd = open("/sys/fs/cgroup/cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, "+memory", 7) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* cgroup v2: the node's memory.max, so a node holds no more than it is given. */
static int node_cgroup(pid_t pid, unsigned node, uint64_t max, char *path, size_t len)
{
	char file[600], val[32];
	int fd;

	snprintf(path, len, "/sys/fs/cgroup/grappe-%d-node%u", (int)getpid(), node);
	if (mkdir(path, 0755) && errno != EEXIST)
		return -errno;
	snprintf(file, sizeof(file), "%s/memory.max", path);
	snprintf(val, sizeof(val), "%llu", (unsigned long long)max);
	fd = open(file, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && !enable_memory_controller())
		fd = open(file, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, val, strlen(val)) < 0)
		goto fail;
	close(fd);
	/* No swap either: the limit must bind. */
	snprintf(file, sizeof(file), "%s/memory.swap.max", path);
	fd = open(file, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "0", 1) < 0) { /* absent without swap accounting */ }
		close(fd);
	}
	snprintf(file, sizeof(file), "%s/cgroup.procs", path);
	snprintf(val, sizeof(val), "%d", (int)pid);
	fd = open(file, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, val, strlen(val)) < 0)
		goto fail;
	close(fd);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	return -errno;
}

struct node_proc {
	pid_t pid;
	int status;
	bool running;
	char cgroup[256];
};

static pid_t spawn_node(const struct launch_opts *o, const struct vm_config *cfg, unsigned node,
			const char *secret, const struct netns_net *net)
{
	char id[16], *argv[32];
	int argc = 0;
	pid_t pid, parent;

	snprintf(id, sizeof(id), "%u", node);
	if (net) {
		argv[argc++] = "ip";
		argv[argc++] = "netns";
		argv[argc++] = "exec";
		argv[argc++] = (char *)net->ns[node];
	}
	argv[argc++] = (char *)o->node_bin;
	argv[argc++] = "--node";
	argv[argc++] = id;
	argv[argc++] = "--secret";
	argv[argc++] = (char *)secret;
	for (unsigned i = 0; net && i < cfg->cluster.nr_nodes; i++) {
		argv[argc++] = "--peer";
		argv[argc++] = (char *)net->peer_arg[i];
	}
	argv[argc++] = (char *)o->xml_path;
	argv[argc] = NULL;
	parent = getpid();
	pid = fork();
	if (pid == 0) {
		/*
		 * A node must not outlive its launcher: if grappe run is killed
		 * (SIGKILL, a harness's timeout), nobody would stop the nodes
		 * or reap them, and whoever waits for their output would wait
		 * forever. The kernel sends SIGTERM, which a node handles like a
		 * shutdown; the check closes the race with a launcher that died
		 * before the prctl.
		 */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) || getppid() != parent)
			_exit(1);
		/* Only node 0 has the console: the others must not read the terminal. */
		if (node != 0) {
			int fd = open("/dev/null", O_RDONLY);

			if (fd >= 0)
				dup2(fd, STDIN_FILENO);
		}
		execvp(argv[0], argv);
		fprintf(stderr, "grappe: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

/* Waits for every node; forwards a signal to all of them. */
static void supervise(struct node_proc *p, unsigned n)
{
	unsigned left = n;

	while (left) {
		int status;
		pid_t pid = waitpid(-1, &status, 0);

		if (pid < 0) {
			if (errno == EINTR && got_signal) {
				for (unsigned i = 0; i < n; i++)
					if (p[i].running)
						kill(p[i].pid, got_signal);
				got_signal = 0;
				continue;
			}
			if (errno == EINTR)
				continue;
			break;
		}
		for (unsigned i = 0; i < n; i++) {
			if (p[i].running && p[i].pid == pid) {
				p[i].running = false;
				p[i].status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
				left--;
			}
		}
	}
}

/* The VM's status: the I/O node's verdict, unless another node failed on its own. */
static int vm_status(const struct node_proc *p, unsigned n)
{
	if (p[0].status != 0)
		return p[0].status;
	for (unsigned i = 1; i < n; i++)
		if (p[i].status != 0)
			return p[i].status;
	return 0;
}

static int run_once(const struct vm_config *cfg, const struct launch_opts *o, const char *secret,
		    const struct netns_net *net)
{
	struct node_proc p[VM_MAX_NODES];
	unsigned n = cfg->cluster.nr_nodes;

	memset(p, 0, sizeof(p));
	for (unsigned i = 0; i < n; i++) {
		if (!net && !launcher_addr_is_local(cfg->cluster.nodes[i].address)) {
			if (!o->quiet)
				fprintf(stderr, "grappe: node %u (%s) is not on this machine: start it "
					"there with grappe-node --listen %s\n", i,
					cfg->cluster.nodes[i].address, cfg->cluster.nodes[i].address);
			p[i].status = 0;
			continue;
		}
		p[i].pid = spawn_node(o, cfg, i, secret, net);
		if (p[i].pid < 0) {
			fprintf(stderr, "grappe: cannot start node %u: %s\n", i, strerror(errno));
			for (unsigned k = 0; k < i; k++)
				if (p[k].running)
					kill(p[k].pid, SIGTERM);
			supervise(p, i);
			return 1;
		}
		p[i].running = true;
		if (cfg->cluster.nodes[i].memory_max &&
		    node_cgroup(p[i].pid, i, cfg->cluster.nodes[i].memory_max, p[i].cgroup,
				sizeof(p[i].cgroup)))
			fprintf(stderr, "grappe: node %u: cannot apply memory-max with cgroup v2: %s\n",
				i, strerror(errno));
	}
	supervise(p, n);
	for (unsigned i = 0; i < n; i++)
		if (p[i].cgroup[0])
			rmdir(p[i].cgroup);
	return vm_status(p, n);
}

int launcher_run(const struct vm_config *cfg, const struct launch_opts *o)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct netns_net net;
	char secret[512];
	bool own_secret = false;
	int status;

	if (!cfg->cluster.nr_nodes) {
		/* One node: it is the VM. */
		execl(o->node_bin, "grappe-node", o->xml_path, (char *)NULL);
		fprintf(stderr, "grappe: cannot run %s: %s\n", o->node_bin, strerror(errno));
		return 1;
	}
	if (cfg->cluster.secret_path) {
		snprintf(secret, sizeof(secret), "%s", cfg->cluster.secret_path);
	} else if (make_secret(secret, sizeof(secret))) {
		fprintf(stderr, "grappe: cannot create a cluster secret: %s\n", strerror(errno));
		return 1;
	} else {
		own_secret = true;
	}
	if (o->netns) {
		char err[256];

		if (netns_setup(&net, cfg, err, sizeof(err))) {
			fprintf(stderr, "grappe: --netns: %s\n", err);
			if (own_secret)
				remove_secret(secret);
			return 1;
		}
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	do {
		status = run_once(cfg, o, secret, o->netns ? &net : NULL);
		if (status == NODE_EXIT_RESTART && !o->quiet)
			fprintf(stderr, "grappe: %s: restarting every node\n", cfg->name);
	} while (status == NODE_EXIT_RESTART);
	if (o->netns)
		netns_teardown(&net);
	if (own_secret)
		remove_secret(secret);
	return status;
}
