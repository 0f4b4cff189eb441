// SPDX-License-Identifier: MIT
/*
 * grappe: the command line. `grappe run VM.xml` starts the VM's nodes on
 * this machine and exits with the VM's status.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mgmt/control_client.h"
#include "mgmt/launcher.h"
#include "vmm/vm_config.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: grappe run [--netns] VM.xml\n"
		   "       grappe qmp SOCKET|VM:NODE COMMAND [JSON-ARGS]\n"
		   "       grappe stats [--json] SOCKET|DIR|VM-NAME...\n"
		   "\n"
		   "  run VM.xml   boot the virtual machine a libvirt domain XML describes;\n"
		   "               the guest's serial console is on stdout by default.\n"
		   "               With a <grappe:cluster> in its metadata, one grappe-node\n"
		   "               per cell is started for every node address on this machine.\n"
		   "  --netns      put each node in its own network namespace (veth + bridge),\n"
		   "               as if each were a separate host; needs root.\n"
		   "  qmp          send one command to a node's control socket and print\n"
		   "               the reply (docs/control.md)\n"
		   "  stats        DSM faults and traffic, hot pages and vCPU exits of each\n"
		   "               node; a VM name means all of its nodes' sockets\n"
		   "\n"
		   "Exit status: 0 guest powered off, 1 guest crashed or VMM error,\n"
		   "2 invalid input.\n");
}

/* grappe-node lives next to grappe. */
static int node_path(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n < 0)
		return -1;
	self[n] = '\0';
	snprintf(out, len, "%s/grappe-node", dirname(self));
	return 0;
}

static void warn_cb(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "grappe: %s\n", msg);
}

int main(int argc, char **argv)
{
	struct launch_opts o = { 0 };
	struct vm_config *cfg;
	char node[PATH_MAX], err[VM_CONFIG_ERR_LEN];
	int i = 2, status;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "qmp"))
		return control_cmd_qmp(argc - 1, argv + 1, stdout, stderr);
	if (!strcmp(argv[1], "stats"))
		return control_cmd_stats(argc - 1, argv + 1, stdout, stderr);
	if (strcmp(argv[1], "run") != 0) {
		fprintf(stderr, "grappe: unknown command '%s'\n", argv[1]);
		usage(stderr);
		return 2;
	}
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--netns")) {
			o.netns = true;
		} else {
			fprintf(stderr, "grappe: unknown option '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (i != argc - 1) {
		usage(stderr);
		return 2;
	}
	o.xml_path = argv[i];
	if (node_path(node, sizeof(node))) {
		fprintf(stderr, "grappe: cannot find grappe-node: %s\n", strerror(errno));
		return 1;
	}
	o.node_bin = node;
	/* Checked here once so that a bad file is one message, not one per node. */
	if (vm_config_load(o.xml_path, &cfg, err, warn_cb, NULL) ||
	    vm_cluster_check(cfg, err)) {
		fprintf(stderr, "grappe: %s\n", err);
		return 2;
	}
	if (o.netns && !cfg->cluster.nr_nodes) {
		fprintf(stderr, "grappe: --netns needs a <grappe:cluster> in the domain's metadata\n");
		vm_config_free(cfg);
		return 2;
	}
	status = launcher_run(cfg, &o);
	vm_config_free(cfg);
	return status;
}
