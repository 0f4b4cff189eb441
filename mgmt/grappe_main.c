// SPDX-License-Identifier: MIT
/*
 * grappe: the command line. `grappe run VM.xml` starts the VM's nodes on
 * this machine (one node until the cluster work lands) and exits with the
 * VM's status.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: grappe run VM.xml\n"
		   "\n"
		   "  run VM.xml   boot the virtual machine a libvirt domain XML describes;\n"
		   "               the guest's serial console is on stdout by default.\n"
		   "               Exit status: 0 guest powered off, 1 guest crashed or VMM\n"
		   "               error, 2 invalid input.\n");
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

int main(int argc, char **argv)
{
	char node[PATH_MAX];

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "run") != 0) {
		fprintf(stderr, "grappe: unknown command '%s'\n", argv[1]);
		usage(stderr);
		return 2;
	}
	if (argc != 3) {
		usage(stderr);
		return 2;
	}
	if (node_path(node, sizeof(node))) {
		fprintf(stderr, "grappe: cannot find grappe-node: %s\n", strerror(errno));
		return 1;
	}
	execl(node, "grappe-node", argv[2], (char *)NULL);
	fprintf(stderr, "grappe: cannot run %s: %s\n", node, strerror(errno));
	return 1;
}
