// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mgmt/netns.h"

/* Runs `ip ARGS...`; returns its exit status. */
static int ip(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *port_of(const char *address)
{
	const char *colon = strrchr(address, ':');

	return colon ? colon + 1 : "0";
}

int netns_setup(struct netns_net *net, const struct vm_config *cfg, char *err, size_t errlen)
{
	unsigned tag = (unsigned)getpid() % 100000, subnet = (unsigned)getpid() % 250 + 1;

	memset(net, 0, sizeof(*net));
	snprintf(net->bridge, sizeof(net->bridge), "gbr%u", tag);
	if (ip("ip link add %s type bridge >/dev/null 2>&1 && ip link set %s up",
	       net->bridge, net->bridge)) {
		snprintf(err, errlen, "cannot create bridge %s (needs root and iproute2)", net->bridge);
		net->bridge[0] = '\0';
		return -1;
	}
	for (unsigned i = 0; i < cfg->cluster.nr_nodes; i++) {
		snprintf(net->ns[i], sizeof(net->ns[i]), "grappe-%u-n%u", tag, i);
		snprintf(net->veth[i], sizeof(net->veth[i]), "gv%u-%u", tag % 100000, i % 64);
		snprintf(net->peer_arg[i], sizeof(net->peer_arg[i]), "%u=10.213.%u.%u:%s", i,
			 subnet, i + 1, port_of(cfg->cluster.nodes[i].address));
		if (ip("ip netns add %s", net->ns[i]) ||
		    ip("ip link add %s type veth peer name eth0 netns %s", net->veth[i], net->ns[i]) ||
		    ip("ip link set %s master %s up", net->veth[i], net->bridge) ||
		    ip("ip -n %s addr add 10.213.%u.%u/24 dev eth0", net->ns[i], subnet, i + 1) ||
		    ip("ip -n %s link set eth0 up", net->ns[i]) ||
		    ip("ip -n %s link set lo up", net->ns[i])) {
			snprintf(err, errlen, "cannot set up network namespace %s", net->ns[i]);
			net->n = i + 1;
			netns_teardown(net);
			return -1;
		}
		net->n = i + 1;
	}
	return 0;
}

void netns_teardown(struct netns_net *net)
{
	for (unsigned i = 0; i < net->n; i++) {
		if (net->ns[i][0])
			ip("ip netns delete %s >/dev/null 2>&1", net->ns[i]);
	}
	if (net->bridge[0])
		ip("ip link delete %s >/dev/null 2>&1", net->bridge);
	net->n = 0;
	net->bridge[0] = '\0';
}
