/* SPDX-License-Identifier: MIT */
/*
 * Tests of the domain XML loader. Run from the repository root (as `make
 * unit-check` does): the examples are loaded by their path from there.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/xmlerror.h>

#include "vmm/vm_config.h"

#define MIB (1024ull * 1024)
#define GIB (1024ull * MIB)

struct warnings {
	int count;
	char last[VM_CONFIG_ERR_LEN];
	char all[8192];
};

static void collect(void *ctx, const char *msg)
{
	struct warnings *w = ctx;
	size_t n = strlen(w->all);

	w->count++;
	snprintf(w->last, sizeof(w->last), "%s", msg);
	snprintf(w->all + n, sizeof(w->all) - n, "%s\n", msg);
}

static struct vm_config *must_parse(const char *xml, struct warnings *w)
{
	struct vm_config *cfg = NULL;
	char err[VM_CONFIG_ERR_LEN] = "";
	int rc;

	rc = vm_config_parse(xml, strlen(xml), "vm.xml", &cfg, err,
			     w ? collect : NULL, w);
	if (rc)
		print_error("unexpected error: %s\n", err);
	assert_int_equal(rc, 0);
	assert_non_null(cfg);
	return cfg;
}

/* Checks that parsing fails and that the message contains 'want'. */
static void must_fail_len(const char *xml, size_t len, const char *want)
{
	struct vm_config *cfg = (void *)1;
	char err[VM_CONFIG_ERR_LEN] = "";
	int rc;

	rc = vm_config_parse(xml, len, "vm.xml", &cfg, err, NULL, NULL);
	assert_int_equal(rc, -1);
	assert_null(cfg);
	if (!strstr(err, want))
		print_error("message '%s' lacks '%s'\n", err, want);
	assert_non_null(strstr(err, want));
	assert_true(!strncmp(err, "vm.xml:", 7));
	assert_null(strchr(err, '\n'));
}

static void must_fail(const char *xml, const char *want)
{
	must_fail_len(xml, strlen(xml), want);
}

#define DOM "<domain type='kvm'>"
#define NAME "<name>t</name>"
#define MEM "<memory unit='MiB'>64</memory>"
#define END "</domain>"
#define BASIC DOM NAME MEM

/* Wraps cells in a 4-vCPU, 1 GiB domain. */
#define NUMA(cells) BASIC_4 "<cpu><numa>" cells "</numa></cpu>" END
#define BASIC_4 DOM NAME "<memory unit='GiB'>1</memory><vcpu>4</vcpu>"
#define CELL(id, cpus) "<cell id='" id "' cpus='" cpus "' memory='512' " \
	"unit='MiB'/>"

/* ---- valid documents ---- */

static void test_minimal(void **state)
{
	struct vm_config *cfg = must_parse(BASIC END, NULL);

	assert_string_equal(cfg->name, "t");
	assert_string_equal(cfg->source, "vm.xml");
	assert_int_equal(cfg->mem_bytes, 64 * MIB);
	assert_int_equal(cfg->nr_vcpus, 1);
	assert_int_equal(cfg->nr_cells, 0);
	assert_null(cfg->kernel);
	assert_null(cfg->initrd);
	assert_null(cfg->cmdline);
	assert_null(cfg->metadata);
	assert_int_equal(cfg->on_poweroff, VM_ACTION_DESTROY);
	assert_int_equal(cfg->on_reboot, VM_ACTION_RESTART);
	assert_int_equal(cfg->on_crash, VM_ACTION_DESTROY);
	assert_int_equal(cfg->serial, VM_SERIAL_NONE);
	assert_int_equal(vm_config_vcpu_cell(cfg, 0), 0);
	vm_config_free(cfg);
}

static void test_grappe_type_and_blanks(void **state)
{
	struct vm_config *cfg = must_parse(
		"<?xml version='1.0' encoding='UTF-8'?>\n"
		"<domain type='grappe'>\n  <name>\n    vm-1\n  </name>\n"
		"  <!-- comment -->\n  <?pi ignored?>\n"
		"  <memory>\n 65536 \n</memory>\n  <vcpu> 3 </vcpu>\n"
		"</domain>\n", NULL);

	assert_string_equal(cfg->name, "vm-1");
	assert_int_equal(cfg->mem_bytes, 64 * MIB);
	assert_int_equal(cfg->nr_vcpus, 3);
	vm_config_free(cfg);
}

static const char full_xml[] =
	"<domain type='kvm'>\n"
	"  <name>full</name>\n"
	"  <uuid>c7a5fdbd-cdaf-9455-926a-d65c16db1809</uuid>\n"
	"  <memory unit='GiB'>1</memory>\n"
	"  <currentMemory unit='MiB'>1024</currentMemory>\n"
	"  <vcpu placement='static' current='4'>4</vcpu>\n"
	"  <os>\n"
	"    <type arch='x86_64' machine='pc'>hvm</type>\n"
	"    <kernel>/boot/vmlinuz</kernel>\n"
	"    <initrd>/boot/initrd.img</initrd>\n"
	"    <cmdline>console=ttyS0 root=/dev/vda</cmdline>\n"
	"    <boot dev='hd'/>\n"
	"  </os>\n"
	"  <features><acpi/><apic/><pae/></features>\n"
	"  <cpu mode='host-passthrough' match='exact'>\n"
	"    <numa>\n"
	"      <cell id='1' cpus='2-3' memory='524288' unit='KiB'>\n"
	"        <distances>\n"
	"          <sibling id='0' value='21'/>\n"
	"          <sibling id='1' value='10'/>\n"
	"        </distances>\n"
	"      </cell>\n"
	"      <cell id='0' cpus='0,1' memory='512' unit='MiB'>\n"
	"        <distances>\n"
	"          <sibling id='0' value='10'/>\n"
	"          <sibling id='1' value='21'/>\n"
	"        </distances>\n"
	"      </cell>\n"
	"    </numa>\n"
	"  </cpu>\n"
	"  <on_poweroff>preserve</on_poweroff>\n"
	"  <on_reboot>destroy</on_reboot>\n"
	"  <on_crash>rename-restart</on_crash>\n"
	"  <devices>\n"
	"    <serial type='file'>\n"
	"      <source path='/var/log/full.log'/>\n"
	"      <target type='isa-serial' port='0'/>\n"
	"    </serial>\n"
	"    <console type='file'>\n"
	"      <source path='/var/log/full.log'/>\n"
	"      <target type='serial' port='0'/>\n"
	"    </console>\n"
	"  </devices>\n"
	"</domain>\n";

static void test_full(void **state)
{
	struct warnings w = { 0 };
	struct vm_config *cfg = must_parse(full_xml, &w);

	assert_int_equal(w.count, 0);
	assert_int_equal(cfg->mem_bytes, GIB);
	assert_int_equal(cfg->nr_vcpus, 4);
	assert_string_equal(cfg->kernel, "/boot/vmlinuz");
	assert_string_equal(cfg->initrd, "/boot/initrd.img");
	assert_string_equal(cfg->cmdline, "console=ttyS0 root=/dev/vda");
	assert_int_equal(cfg->nr_cells, 2);
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(cfg->cells[i].id, i);
		assert_int_equal(cfg->cells[i].mem_bytes, 512 * MIB);
		assert_int_equal(cfg->cells[i].nr_vcpus, 2);
		assert_int_equal(cfg->cells[i].vcpus[0], 2 * i);
		assert_int_equal(cfg->cells[i].vcpus[1], 2 * i + 1);
		assert_int_equal(cfg->cells[i].distance[i], 10);
		assert_int_equal(cfg->cells[i].distance[1 - i], 21);
	}
	assert_int_equal(vm_config_vcpu_cell(cfg, 0), 0);
	assert_int_equal(vm_config_vcpu_cell(cfg, 1), 0);
	assert_int_equal(vm_config_vcpu_cell(cfg, 2), 1);
	assert_int_equal(vm_config_vcpu_cell(cfg, 3), 1);
	assert_int_equal(cfg->on_poweroff, VM_ACTION_PRESERVE);
	assert_int_equal(cfg->on_reboot, VM_ACTION_DESTROY);
	assert_int_equal(cfg->on_crash, VM_ACTION_RENAME_RESTART);
	assert_int_equal(cfg->serial, VM_SERIAL_FILE);
	assert_string_equal(cfg->serial_path, "/var/log/full.log");
	vm_config_free(cfg);
}

static void test_every_prefix_fails(void **state)
{
	size_t len = strlen(full_xml);
	struct vm_config *cfg;
	char err[VM_CONFIG_ERR_LEN];

	/* The closing tag ends at len - 1: everything before must fail. */
	for (size_t n = 0; n < len - 1; n++) {
		assert_int_equal(vm_config_parse(full_xml, n, "vm.xml", &cfg,
						 err, NULL, NULL), -1);
		assert_null(cfg);
		assert_true(!strncmp(err, "vm.xml", 6));
	}
}

/* ---- memory ---- */

static void test_units(void **state)
{
	static const struct {
		const char *unit;
		const char *value;
		uint64_t bytes;
	} t[] = {
		{ NULL, "4", 4096 },
		{ "b", "8192", 8192 },
		{ "bytes", "8192", 8192 },
		{ "KB", "4096", 4096000 },
		{ "k", "4", 4096 },
		{ "KiB", "4", 4096 },
		{ "MB", "4096", 4096000000ull },
		{ "M", "3", 3 * MIB },
		{ "MiB", "3", 3 * MIB },
		{ "GB", "4096", 4096000000000ull },
		{ "G", "2", 2 * GIB },
		{ "GiB", "2", 2 * GIB },
		{ "TB", "4096", 4096000000000000ull },
		{ "T", "1", 1024 * GIB },
		{ "TiB", "1", 1024 * GIB },
		{ "mib", "1", MIB },	/* libvirt ignores case */
		{ "PiB", "1", 1024 * 1024 * GIB },
	};
	char xml[256];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct vm_config *cfg;

		if (t[i].unit)
			snprintf(xml, sizeof(xml), DOM NAME "<memory unit='%s'>"
				 "%s</memory>" END, t[i].unit, t[i].value);
		else
			snprintf(xml, sizeof(xml), DOM NAME "<memory>%s"
				 "</memory>" END, t[i].value);
		cfg = must_parse(xml, NULL);
		if (cfg->mem_bytes != t[i].bytes)
			print_error("unit %s\n", t[i].unit);
		assert_int_equal(cfg->mem_bytes, t[i].bytes);
		vm_config_free(cfg);
	}
}

static void test_memory_rounded_to_page(void **state)
{
	struct vm_config *cfg;

	cfg = must_parse(DOM NAME "<memory unit='b'>1</memory>" END, NULL);
	assert_int_equal(cfg->mem_bytes, 4096);
	vm_config_free(cfg);

	/* Each cell is rounded; the total is the sum of the rounded cells. */
	cfg = must_parse(DOM NAME "<memory unit='GB'>1</memory><vcpu>2</vcpu>"
			 "<cpu><numa>"
			 "<cell cpus='0' memory='500' unit='MB'/>"
			 "<cell cpus='1' memory='500' unit='MB'/>"
			 "</numa></cpu>" END, NULL);
	assert_int_equal(cfg->cells[0].mem_bytes, 500002816);
	assert_int_equal(cfg->cells[1].mem_bytes, 500002816);
	assert_int_equal(cfg->mem_bytes, 2 * 500002816ull);
	vm_config_free(cfg);
}

static void test_bad_memory(void **state)
{
	must_fail(DOM NAME "<memory>abc</memory>" END,
		  "<memory> must be a positive integer, got 'abc'");
	must_fail(DOM NAME "<memory>-1</memory>" END, "got '-1'");
	must_fail(DOM NAME "<memory>+1</memory>" END, "got '+1'");
	must_fail(DOM NAME "<memory>1.5</memory>" END, "got '1.5'");
	must_fail(DOM NAME "<memory></memory>" END, "got ''");
	must_fail(DOM NAME "<memory>0</memory>" END, "got '0'");
	must_fail(DOM NAME "<memory>99999999999999999999999</memory>" END,
		  "positive integer");
	must_fail(DOM NAME "<memory unit='EiB'>1</memory>" END,
		  "<memory> is too large");
	must_fail(DOM NAME "<memory unit='TiB'>4097</memory>" END,
		  "too large");
	must_fail(DOM NAME "<memory unit='XB'>1</memory>" END,
		  "<memory> has an unknown unit 'XB'");
	must_fail(DOM NAME "<memory unit='KiBB'>1</memory>" END,
		  "unknown unit");
	must_fail(DOM NAME "<memory unit=''>1</memory>" END "x",
		  "Extra content");
	must_fail(DOM NAME END, "<memory> is missing");
	must_fail(DOM NAME MEM "<currentMemory>x</currentMemory>" END,
		  "<currentMemory> must be a positive integer");
}

static void test_current_memory_warns(void **state)
{
	struct warnings w = { 0 };
	struct vm_config *cfg;

	cfg = must_parse(DOM NAME "<currentMemory unit='MiB'>32"
			 "</currentMemory>" MEM END, &w);
	assert_int_equal(w.count, 1);
	assert_non_null(strstr(w.last, "vm.xml:1: warning: <currentMemory> "
			       "(33554432 bytes) differs from <memory> "
			       "(67108864 bytes)"));
	assert_int_equal(cfg->mem_bytes, 64 * MIB);
	vm_config_free(cfg);
}

/* libvirt takes the size from the cells when <memory> is left out. */
static void test_memory_from_cells(void **state)
{
	struct vm_config *cfg;

	cfg = must_parse(DOM NAME "<vcpu>2</vcpu><cpu><numa>"
			 CELL("0", "0") CELL("1", "1") "</numa></cpu>" END,
			 NULL);
	assert_int_equal(cfg->mem_bytes, GIB);
	vm_config_free(cfg);
}

/* ---- name, vcpu, root ---- */

static void test_bad_name(void **state)
{
	must_fail(DOM MEM END, "vm.xml:1: <name> is missing");
	must_fail(DOM "<name> </name>" MEM END, "<name> is empty");
	must_fail(DOM "<name>a/b</name>" MEM END, "must not contain '/'");
	must_fail(DOM "<name>a&#9;b</name>" MEM END, "control characters");
	must_fail(DOM NAME NAME MEM END,
		  "<name> appears twice (first on line 1)");
}

static void test_vcpu_default_and_max(void **state)
{
	struct vm_config *cfg;

	cfg = must_parse(BASIC "<vcpu>64</vcpu>" END, NULL);
	assert_int_equal(cfg->nr_vcpus, 64);
	vm_config_free(cfg);
	cfg = must_parse(BASIC "<vcpu>1</vcpu>" END, NULL);
	assert_int_equal(cfg->nr_vcpus, 1);
	vm_config_free(cfg);
}

static void test_bad_vcpu(void **state)
{
	must_fail(BASIC "<vcpu>0</vcpu>" END,
		  "<vcpu> must be an integer between 1 and 64, got '0'");
	must_fail(BASIC "<vcpu>65</vcpu>" END, "got '65'");
	must_fail(BASIC "<vcpu>abc</vcpu>" END, "got 'abc'");
	must_fail(BASIC "<vcpu>-1</vcpu>" END, "got '-1'");
	must_fail(BASIC "<vcpu></vcpu>" END, "got ''");
	must_fail(BASIC "<vcpu>4294967297</vcpu>" END, "got '4294967297'");
	must_fail(BASIC "<vcpu>2</vcpu><vcpu>2</vcpu>" END, "appears twice");
}

static void test_vcpu_error_line(void **state)
{
	must_fail("<domain type='kvm'>\n"
		  "  <name>t</name>\n"
		  "  <memory>65536</memory>\n"
		  "\n"
		  "  <!-- many\n"
		  "       lines -->\n"
		  "  <vcpu>abc</vcpu>\n"
		  "</domain>\n",
		  "vm.xml:7: <vcpu> must be an integer between 1 and 64, "
		  "got 'abc'");
}

static void test_bad_root(void **state)
{
	must_fail("<domainx type='kvm'/>",
		  "vm.xml:1: the root element must be <domain>, got <domainx>");
	must_fail("<x:domain xmlns:x='urn:x' type='kvm'/>",
		  "got <x:domain>");
	must_fail("<domain>" NAME MEM END, "type must be 'kvm' or 'grappe'");
	must_fail("<domain type='qemu'>" NAME MEM END, "got 'qemu'");
	must_fail("<domain type='xen'>" NAME MEM END, "got 'xen'");
}

/* ---- os ---- */

static void test_os(void **state)
{
	must_fail(BASIC "<os><type>xen</type></os>" END,
		  "<os><type> must be 'hvm', got 'xen'");
	must_fail(BASIC "<os><type arch='aarch64'>hvm</type></os>" END,
		  "arch 'aarch64' is not supported");
	must_fail(BASIC "<os><kernel> </kernel></os>" END, "<kernel> is empty");
	must_fail(BASIC "<os><initrd>/i</initrd></os>" END,
		  "<initrd> and <cmdline> need <kernel>");
	must_fail(BASIC "<os><kernel>/a</kernel><kernel>/b</kernel></os>" END,
		  "<kernel> appears twice");
}

static void test_os_ignored_parts(void **state)
{
	struct warnings w = { 0 };
	struct vm_config *cfg;

	cfg = must_parse(BASIC "<os><type>hvm</type><boot dev='hd'/>"
			 "<boot dev='cdrom'/><loader>/x</loader>"
			 "<kernel>k</kernel><cmdline></cmdline></os>" END, &w);
	assert_int_equal(w.count, 1);
	assert_non_null(strstr(w.last, "<loader> is not supported yet"));
	/* A buffer has no directory: relative paths stay as they are. */
	assert_string_equal(cfg->kernel, "k");
	assert_string_equal(cfg->cmdline, "");
	vm_config_free(cfg);
}

/* ---- cells ---- */

static void test_cpuset_syntax(void **state)
{
	struct vm_config *cfg;

	cfg = must_parse(NUMA("<cell id='0' cpus=' 0-3 , ^1,^2 ' memory='512'"
			      " unit='MiB'/>" CELL("1", "1-2")), NULL);
	assert_int_equal(cfg->cells[0].nr_vcpus, 2);
	assert_int_equal(cfg->cells[0].vcpus[0], 0);
	assert_int_equal(cfg->cells[0].vcpus[1], 3);
	assert_int_equal(vm_config_vcpu_cell(cfg, 1), 1);
	assert_int_equal(vm_config_vcpu_cell(cfg, 2), 1);
	assert_int_equal(vm_config_vcpu_cell(cfg, 3), 0);
	vm_config_free(cfg);
}

static void test_bad_cpuset(void **state)
{
	must_fail(NUMA(CELL("0", "0-") CELL("1", "2-3")),
		  "cpus: expected a vCPU number");
	must_fail(NUMA(CELL("0", "a") CELL("1", "2-3")), "expected a vCPU");
	must_fail(NUMA(CELL("0", "") CELL("1", "2-3")), "expected a vCPU");
	must_fail(NUMA(CELL("0", "0,,1") CELL("1", "2-3")), "expected a vCPU");
	must_fail(NUMA(CELL("0", "^") CELL("1", "2-3")), "expected a vCPU");
	must_fail(NUMA(CELL("0", "1-0") CELL("1", "2-3")),
		  "cpus: range 1-0 is reversed");
	must_fail(NUMA(CELL("0", "0;1") CELL("1", "2-3")), "unexpected ';1'");
	must_fail(NUMA(CELL("0", "0-1,^0,^1") CELL("1", "2-3")),
		  "cpus names no vCPU");
	must_fail(NUMA(CELL("0", "64") CELL("1", "2-3")),
		  "vCPU numbers go up to 63");
	must_fail(NUMA(CELL("0", "99999999999999999999999") CELL("1", "2-3")),
		  "go up to 63");
	must_fail(NUMA("<cell id='0' memory='1' unit='GiB'/>"),
		  "<cell> needs cpus=");
}

static void test_cells_not_partition(void **state)
{
	/* overlap */
	must_fail(NUMA(CELL("0", "0-2") CELL("1", "2-3")),
		  "vCPU 2 is in more than one cell");
	/* gap */
	must_fail(NUMA(CELL("0", "0") CELL("1", "2-3")),
		  "vCPU 1 is in no cell");
	/* beyond <vcpu> */
	must_fail(NUMA(CELL("0", "0-1") CELL("1", "2-5")),
		  "cell 1 has vCPU 5 but there are only 4 vCPUs");
}

static void test_memory_sum_mismatch(void **state)
{
	must_fail(NUMA(CELL("0", "0-1") "<cell id='1' cpus='2-3' "
		       "memory='256' unit='MiB'/>"),
		  "the cells' memory adds up to 805306368 bytes but <memory> "
		  "is 1073741824 bytes");
	must_fail(NUMA(CELL("0", "0-1") "<cell id='1' cpus='2-3' "
		       "memory='0'/>"),
		  "<cell> memory must be a positive integer, got '0'");
	must_fail(NUMA(CELL("0", "0-1") "<cell id='1' cpus='2-3'/>"),
		  "<cell> needs memory=");
	must_fail(NUMA(CELL("0", "0-1") "<cell id='1' cpus='2-3' "
		       "memory='1' unit='parsec'/>"),
		  "unknown unit 'parsec'");
}

static void test_cell_ids(void **state)
{
	struct vm_config *cfg;

	must_fail(NUMA(CELL("0", "0-1") CELL("0", "2-3")),
		  "vm.xml:1: <cell> id 0 appears twice");
	must_fail(NUMA(CELL("0", "0-1") CELL("2", "2-3")),
		  "<cell> id 2 is out of range: ids must be 0..1");
	must_fail(NUMA(CELL("0", "0-1") CELL("x", "2-3")),
		  "<cell> id must be between 0 and 15, got 'x'");
	must_fail(BASIC_4 "<cpu><numa/></cpu>" END, "<numa> has no <cell>");

	/* Without id=, cells are numbered in document order. */
	cfg = must_parse(NUMA("<cell cpus='0-1' memory='512' unit='MiB'/>"
			      "<cell cpus='2-3' memory='512' unit='MiB'/>"),
			 NULL);
	assert_int_equal(cfg->nr_cells, 2);
	assert_int_equal(cfg->cells[1].id, 1);
	assert_int_equal(vm_config_vcpu_cell(cfg, 3), 1);
	vm_config_free(cfg);
}

static void test_too_many_cells(void **state)
{
	char xml[4096];
	size_t n;

	n = snprintf(xml, sizeof(xml), DOM NAME "<vcpu>17</vcpu><cpu><numa>");
	for (int i = 0; i < 17; i++)
		n += snprintf(xml + n, sizeof(xml) - n, "<cell cpus='%d' "
			      "memory='1' unit='MiB'/>", i);
	snprintf(xml + n, sizeof(xml) - n, "</numa></cpu>" END);
	must_fail(xml, "too many cells (at most 16)");
}

static void test_default_distances(void **state)
{
	struct vm_config *cfg;

	cfg = must_parse(NUMA(CELL("0", "0-1") CELL("1", "2-3")), NULL);
	assert_int_equal(cfg->cells[0].distance[0], 10);
	assert_int_equal(cfg->cells[0].distance[1], 20);
	assert_int_equal(cfg->cells[1].distance[0], 20);
	assert_int_equal(cfg->cells[1].distance[1], 10);
	vm_config_free(cfg);
}

/* A distance given one way only holds both ways, as in libvirt. */
static void test_mirrored_distances(void **state)
{
	struct vm_config *cfg;

	cfg = must_parse(NUMA("<cell id='0' cpus='0-1' memory='512' "
			      "unit='MiB'><distances><sibling id='1' "
			      "value='33'/></distances></cell>"
			      "<cell id='1' cpus='2-3' memory='512' "
			      "unit='MiB'/>"), NULL);
	assert_int_equal(cfg->cells[0].distance[1], 33);
	assert_int_equal(cfg->cells[1].distance[0], 33);
	assert_int_equal(cfg->cells[1].distance[1], 10);
	vm_config_free(cfg);
}

#define DCELL0(sib) "<cell id='0' cpus='0-1' memory='512' unit='MiB'>" \
	"<distances>" sib "</distances></cell>" CELL("1", "2-3")

static void test_bad_distances(void **state)
{
	must_fail(NUMA(DCELL0("<sibling id='0' value='11'/>")),
		  "distance of cell 0 to itself must be 10, got 11");
	must_fail(NUMA(DCELL0("<sibling id='1' value='10'/>")),
		  "distance from cell 0 to cell 1 must be more than 10");
	must_fail(NUMA(DCELL0("<sibling id='1' value='9'/>")),
		  "<sibling> value must be between 10 and 254, got '9'");
	must_fail(NUMA(DCELL0("<sibling id='1' value='255'/>")), "got '255'");
	must_fail(NUMA(DCELL0("<sibling id='1' value='x'/>")), "got 'x'");
	must_fail(NUMA(DCELL0("<sibling id='1'/>")), "got ''");
	must_fail(NUMA(DCELL0("<sibling id='2' value='20'/>")),
		  "<sibling> id 2 is not a cell");
	must_fail(NUMA(DCELL0("<sibling id='16' value='20'/>")),
		  "<sibling> id must be a cell id between 0 and 15");
	must_fail(NUMA(DCELL0("<sibling value='20'/>")), "got ''");
	must_fail(NUMA(DCELL0("<sibling id='1' value='20'/>"
			      "<sibling id='1' value='30'/>")),
		  "<sibling> id 1 appears twice in this cell");
}

/* ---- on_* ---- */

static void test_actions(void **state)
{
	struct vm_config *cfg;

	cfg = must_parse(BASIC "<on_poweroff>restart</on_poweroff>"
			 "<on_reboot>rename-restart</on_reboot>"
			 "<on_crash>coredump-restart</on_crash>" END, NULL);
	assert_int_equal(cfg->on_poweroff, VM_ACTION_RESTART);
	assert_int_equal(cfg->on_reboot, VM_ACTION_RENAME_RESTART);
	assert_int_equal(cfg->on_crash, VM_ACTION_RESTART);
	vm_config_free(cfg);
	cfg = must_parse(BASIC "<on_crash>coredump-destroy</on_crash>" END,
			 NULL);
	assert_int_equal(cfg->on_crash, VM_ACTION_DESTROY);
	vm_config_free(cfg);
}

static void test_bad_actions(void **state)
{
	must_fail(BASIC "<on_poweroff>explode</on_poweroff>" END,
		  "<on_poweroff> must be destroy, restart, preserve or "
		  "rename-restart, got 'explode'");
	must_fail(BASIC "<on_reboot>coredump-destroy</on_reboot>" END,
		  "got 'coredump-destroy'");
	must_fail(BASIC "<on_crash>Destroy</on_crash>" END, "got 'Destroy'");
	must_fail(BASIC "<on_crash>destroy</on_crash><on_crash>destroy"
		  "</on_crash>" END, "<on_crash> appears twice");
}

/* ---- serial ---- */

static struct vm_config *with_devices(const char *devices,
				      struct warnings *w)
{
	char xml[1024];

	snprintf(xml, sizeof(xml), BASIC "<devices>%s</devices>" END,
		 devices);
	return must_parse(xml, w);
}

static void test_serial_types(void **state)
{
	static const struct {
		const char *xml;
		enum vm_serial_type type;
	} t[] = {
		{ "<serial type='stdio'/>", VM_SERIAL_STDIO },
		{ "<serial type='pty'><target port='0'/></serial>",
		  VM_SERIAL_PTY },
		{ "<serial/>", VM_SERIAL_PTY },
		{ "<serial type='null'/>", VM_SERIAL_NONE },
		{ "<console type='stdio'/>", VM_SERIAL_STDIO },
		{ "<console type='pty'><target type='serial'/></console>",
		  VM_SERIAL_PTY },
		/* The serial port wins over a console naming it. */
		{ "<console type='pty'/><serial type='stdio'/>",
		  VM_SERIAL_STDIO },
		{ "", VM_SERIAL_NONE },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct warnings w = { 0 };
		struct vm_config *cfg = with_devices(t[i].xml, &w);

		assert_int_equal(cfg->serial, t[i].type);
		assert_int_equal(w.count, 0);
		vm_config_free(cfg);
	}
}

static void test_serial_file(void **state)
{
	struct vm_config *cfg;

	cfg = with_devices("<serial type='file'><source path='/tmp/s.log' "
			   "append='on'/></serial>", NULL);
	assert_int_equal(cfg->serial, VM_SERIAL_FILE);
	assert_string_equal(cfg->serial_path, "/tmp/s.log");
	vm_config_free(cfg);

	must_fail(BASIC "<devices><serial type='file'/></devices>" END,
		  "<serial type='file'> needs <source path='...'/>");
	must_fail(BASIC "<devices><serial type='file'><source/></serial>"
		  "</devices>" END, "needs <source path");
	must_fail(BASIC "<devices><serial type='tcp'/></devices>" END,
		  "<serial> type 'tcp' is not supported");
	must_fail(BASIC "<devices><console type='unix'/></devices>" END,
		  "<console> type 'unix' is not supported");
}

static void test_more_serials_warn(void **state)
{
	struct warnings w = { 0 };
	struct vm_config *cfg;

	cfg = with_devices("<serial type='stdio'/>\n<serial type='pty'/>"
			   "<console type='pty'><target type='virtio'/>"
			   "</console>", &w);
	assert_int_equal(cfg->serial, VM_SERIAL_STDIO);
	assert_int_equal(w.count, 1);
	assert_non_null(strstr(w.last, "vm.xml:2: warning: only the first "
			       "<serial> is used"));
	vm_config_free(cfg);

	/* A virtio console is no serial port. */
	w.count = 0;
	cfg = with_devices("<console type='pty'><target type='virtio'/>"
			   "</console>", &w);
	assert_int_equal(cfg->serial, VM_SERIAL_NONE);
	assert_int_equal(w.count, 1);
	assert_non_null(strstr(w.last, "target type 'virtio' is not "
			       "supported yet"));
	vm_config_free(cfg);
}

/* ---- unsupported and tolerated elements ---- */

static void test_unsupported_warn_once(void **state)
{
	struct warnings w = { 0 };
	struct vm_config *cfg;

	cfg = must_parse("<domain type='kvm' xmlns:q='urn:q'>\n"
			 "<name>t</name>\n"
			 "<memory>65536</memory>\n"
			 "<clock offset='utc'/>\n"
			 "<features><acpi/><apic/><hyperv/></features>\n"
			 "<on_lockfailure>poweroff</on_lockfailure>\n"
			 "<devices>\n"
			 "  <emulator>/usr/bin/qemu</emulator>\n"
			 "  <filesystem type='mount'/>\n"
			 "  <filesystem type='mount'/>\n"
			 "  <interface type='network'/>\n"
			 "  <memballoon model='virtio'/>\n"
			 "  <graphics type='vnc'/>\n"
			 "</devices>\n"
			 "<q:commandline/>\n"
			 "<cpu><model>x</model><topology/></cpu>\n"
			 "</domain>\n", &w);
	assert_int_equal(w.count, 11);
	assert_non_null(strstr(w.all, "vm.xml:4: warning: <clock> is not "
			       "supported yet, ignored\n"));
	assert_non_null(strstr(w.all, "vm.xml:5: warning: <hyperv> is not"));
	assert_non_null(strstr(w.all, "vm.xml:6: warning: <on_lockfailure>"));
	assert_non_null(strstr(w.all, "vm.xml:8: warning: <emulator>"));
	assert_non_null(strstr(w.all, "vm.xml:9: warning: <filesystem> is not"));
	assert_null(strstr(w.all, "vm.xml:10:"));
	assert_non_null(strstr(w.all, "vm.xml:11: warning: <interface>"));
	assert_non_null(strstr(w.all, "vm.xml:12: warning: <memballoon>"));
	assert_non_null(strstr(w.all, "vm.xml:13: warning: <graphics>"));
	assert_non_null(strstr(w.all, "vm.xml:15: warning: <q:commandline>"));
	assert_non_null(strstr(w.all, "vm.xml:16: warning: <model>"));
	assert_non_null(strstr(w.all, "vm.xml:16: warning: <topology>"));
	assert_null(strstr(w.all, "acpi"));
	vm_config_free(cfg);
}

static void test_no_warn_callback(void **state)
{
	struct vm_config *cfg;

	cfg = must_parse(BASIC "<clock/><devices><filesystem/><serial/><serial/>"
			 "</devices>" END, NULL);
	assert_int_equal(cfg->serial, VM_SERIAL_PTY);
	vm_config_free(cfg);
}

static void test_metadata_kept(void **state)
{
	struct warnings w = { 0 };
	struct vm_config *cfg;

	cfg = must_parse("<domain type='kvm' xmlns:g='urn:grappe'>" NAME MEM
			 "<metadata><g:cluster><g:host cell='0' "
			 "addr='10.0.0.1'/></g:cluster></metadata>" END, &w);
	assert_int_equal(w.count, 0);
	assert_non_null(cfg->metadata);
	/* The namespace declared on <domain> travels with the copy. */
	assert_non_null(strstr(cfg->metadata, "xmlns:g=\"urn:grappe\""));
	assert_non_null(strstr(cfg->metadata, "<g:host cell=\"0\" "
			       "addr=\"10.0.0.1\"/>"));
	vm_config_free(cfg);
}

/* ---- malformed and hostile input ---- */

static void test_malformed(void **state)
{
	must_fail("<domain type='kvm'>\n<name>t</name>\n<memory>1</vcpu>\n"
		  END, "vm.xml:3: Opening and ending tag mismatch");
	must_fail("<domain type='kvm'>\n<name>t</nam", "vm.xml:2:");
	must_fail("", "vm.xml");
	must_fail("   ", "vm.xml");
	must_fail("not xml", "vm.xml:1: Start tag expected");
	must_fail(BASIC END "<domain/>", "Extra content at the end");
	must_fail(DOM "<name>&foo;</name>" MEM END,
		  "Entity 'foo' not defined");
	must_fail(DOM "<name a='1' a='2'>t</name>" MEM END,
		  "Attribute a redefined");
	must_fail(DOM "<q:name>t</q:name>" MEM END, "Namespace prefix q");
	must_fail("<?xml version='1.0' encoding='no-such-encoding'?>"
		  BASIC END, "vm.xml:1:");
	must_fail_len(BASIC "\0" END, sizeof(BASIC END), "vm.xml:1:");
	must_fail(DOM "<name>\xff\xfe</name>" MEM END,
		  "vm.xml:1: Input is not proper UTF-8");
	must_fail(BASIC "<vcpu>1\n2</vcpu>" END, "got '1 2'");
}

static void test_truncated(void **state)
{
	const char *xml = "<domain type='kvm'>\n<name>t</name>\n"
			  "<memory>65536</memory>\n</dom";

	must_fail(xml, "vm.xml:4:");
	must_fail_len(xml, 25, "vm.xml:2:");
}

static const char billion_laughs[] =
	"<?xml version='1.0'?>\n"
	"<!DOCTYPE domain [\n"
	" <!ENTITY lol 'lol'>\n"
	" <!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>\n"
	" <!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>\n"
	" <!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>\n"
	" <!ENTITY lol4 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>\n"
	" <!ENTITY lol5 '&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;'>\n"
	" <!ENTITY lol6 '&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;'>\n"
	" <!ENTITY lol7 '&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;'>\n"
	" <!ENTITY lol8 '&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;'>\n"
	" <!ENTITY lol9 '&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;'>\n"
	"]>\n"
	"<domain type='kvm'><name>&lol9;</name><memory>1</memory></domain>\n";

static void test_billion_laughs(void **state)
{
	must_fail(billion_laughs, "vm.xml:2: <!DOCTYPE> is not allowed");
}

static void test_external_entities(void **state)
{
	must_fail("<!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>"
		  "<domain type='kvm'><name>&x;</name>" MEM END,
		  "<!DOCTYPE> is not allowed");
	must_fail("<!DOCTYPE domain SYSTEM 'http://127.0.0.1:1/x.dtd'>"
		  BASIC END, "<!DOCTYPE> is not allowed");
	must_fail("<!DOCTYPE domain>" BASIC END, "<!DOCTYPE> is not allowed");
	/* An XInclude is not processed: it is one more unknown element. */
	struct warnings w = { 0 };
	struct vm_config *cfg = must_parse(
		"<domain type='kvm' xmlns:xi='http://www.w3.org/2001/XInclude'>"
		NAME MEM "<xi:include href='/etc/passwd'/>" END, &w);
	assert_int_equal(w.count, 1);
	assert_non_null(strstr(w.last, "<xi:include> is not supported"));
	vm_config_free(cfg);
}

static char *padded(size_t len)
{
	static const char head[] = BASIC "<!--";
	static const char tail[] = "-->" END;
	char *buf = malloc(len + 1);

	assert_non_null(buf);
	memset(buf, 'x', len);
	memcpy(buf, head, sizeof(head) - 1);
	memcpy(buf + len - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
	buf[len] = '\0';
	return buf;
}

static void test_size_limit(void **state)
{
	char *buf = padded(VM_CONFIG_MAX_XML);
	struct vm_config *cfg = must_parse(buf, NULL);

	vm_config_free(cfg);
	free(buf);
	buf = padded(VM_CONFIG_MAX_XML + 1);
	must_fail(buf, "vm.xml: input is larger than 1048576 bytes");
	free(buf);
}

static void test_deep_nesting(void **state)
{
	size_t depth = 100000, n = 0;
	char *buf = malloc(depth * 7 + 64);

	assert_non_null(buf);
	n += sprintf(buf, DOM);
	for (size_t i = 0; i < depth; i++)
		n += sprintf(buf + n, "<a>");
	buf[n] = '\0';
	must_fail(buf, "vm.xml:1:");
	free(buf);
}

/* The library prints nothing itself, even on libxml2's errors. */
static void test_silent(void **state)
{
	char path[] = "/tmp/test_domain_xml_stderr.XXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	struct stat st;
	struct vm_config *cfg;
	char err[VM_CONFIG_ERR_LEN];

	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	vm_config_parse(billion_laughs, strlen(billion_laughs), "a", &cfg, err,
			NULL, NULL);
	vm_config_parse("<a>", 3, "a", &cfg, err, NULL, NULL);
	vm_config_parse("<?xml version='1.0' encoding='bogus'?><a/>", 42, "a",
			&cfg, err, NULL, NULL);
	vm_config_parse("<a xmlns:x='relative'/>", 23, "a", &cfg, err, NULL,
			NULL);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 0);
	close(fd);
	unlink(path);
}

static void caller_handler(void *ctx, xmlErrorPtr e)
{
}

/* The caller's own libxml2 error handler is put back after a parse. */
static void test_error_handler_restored(void **state)
{
	int token;
	struct vm_config *cfg;
	char err[VM_CONFIG_ERR_LEN];

	xmlSetStructuredErrorFunc(&token, caller_handler);
	assert_int_equal(vm_config_parse("<a", 2, "a", &cfg, err, NULL, NULL),
			 -1);
	assert_ptr_equal(xmlStructuredError, caller_handler);
	assert_ptr_equal(xmlStructuredErrorContext, &token);
	xmlSetStructuredErrorFunc(NULL, NULL);
}

static void test_first_error_kept(void **state)
{
	/* Both the name and the memory are wrong: the first one is told. */
	must_fail("<domain type='kvm'>\n<name>a/b</name>\n<memory>x</memory>"
		  END, "vm.xml:2: <name>");
}

static void test_null_err_and_free_null(void **state)
{
	struct vm_config *cfg;

	assert_int_equal(vm_config_parse("x", 1, NULL, &cfg, NULL, NULL, NULL),
			 -1);
	vm_config_free(NULL);
}

/* ---- files ---- */

static char *cwd_join(const char *rel)
{
	char *cwd = getcwd(NULL, 0), *s;

	assert_non_null(cwd);
	assert_true(asprintf(&s, "%s/%s", cwd, rel) > 0);
	free(cwd);
	return s;
}

static void check_example_paths(struct vm_config *cfg)
{
	char *kernel = cwd_join("examples/../build/guest/vmlinuz");
	char *initrd = cwd_join("examples/../build/guest/initramfs.gz");

	assert_string_equal(cfg->kernel, kernel);
	assert_string_equal(cfg->initrd, initrd);
	assert_string_equal(cfg->cmdline, "console=ttyS0 panic=-1");
	free(kernel);
	free(initrd);
}

static struct vm_config *must_load(const char *path, struct warnings *w)
{
	struct vm_config *cfg = NULL;
	char err[VM_CONFIG_ERR_LEN] = "";

	if (vm_config_load(path, &cfg, err, collect, w))
		print_error("%s\n", err);
	assert_non_null(cfg);
	return cfg;
}

static void test_example_single(void **state)
{
	struct warnings w = { 0 };
	struct vm_config *cfg = must_load("examples/single.xml", &w);

	assert_int_equal(w.count, 0);
	assert_string_equal(cfg->name, "single");
	assert_string_equal(cfg->source, "examples/single.xml");
	assert_int_equal(cfg->nr_vcpus, 2);
	assert_int_equal(cfg->mem_bytes, 512 * MIB);
	assert_int_equal(cfg->nr_cells, 1);
	assert_int_equal(cfg->cells[0].nr_vcpus, 2);
	assert_int_equal(cfg->cells[0].distance[0], 10);
	assert_int_equal(cfg->serial, VM_SERIAL_STDIO);
	assert_int_equal(cfg->on_poweroff, VM_ACTION_DESTROY);
	check_example_paths(cfg);
	vm_config_free(cfg);
}

static void test_example_two_cells(void **state)
{
	struct warnings w = { 0 };
	struct vm_config *cfg = must_load("examples/two-cells.xml", &w);

	assert_int_equal(w.count, 0);
	assert_int_equal(cfg->nr_vcpus, 4);
	assert_int_equal(cfg->mem_bytes, GIB);
	assert_int_equal(cfg->nr_cells, 2);
	assert_int_equal(cfg->cells[0].distance[1], 20);
	assert_int_equal(cfg->cells[1].distance[0], 20);
	assert_int_equal(cfg->cells[1].distance[1], 10);
	assert_int_equal(vm_config_vcpu_cell(cfg, 2), 1);
	check_example_paths(cfg);
	vm_config_free(cfg);
}

static void test_example_four_cells(void **state)
{
	static const unsigned dist[4][4] = {
		{ 10, 20, 30, 30 },
		{ 20, 10, 30, 30 },
		{ 30, 30, 10, 20 },
		{ 30, 30, 20, 10 },
	};
	struct warnings w = { 0 };
	struct vm_config *cfg = must_load("examples/four-cells.xml", &w);

	assert_int_equal(w.count, 0);
	assert_int_equal(cfg->nr_vcpus, 8);
	assert_int_equal(cfg->mem_bytes, 4 * GIB);
	assert_int_equal(cfg->nr_cells, 4);
	assert_int_equal(cfg->serial, VM_SERIAL_PTY);
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(cfg->cells[i].mem_bytes, GIB);
		assert_int_equal(cfg->cells[i].nr_vcpus, 2);
		for (unsigned j = 0; j < 4; j++)
			assert_int_equal(cfg->cells[i].distance[j], dist[i][j]);
	}
	for (unsigned v = 0; v < 8; v++)
		assert_int_equal(vm_config_vcpu_cell(cfg, v), v / 2);
	check_example_paths(cfg);
	vm_config_free(cfg);
}

static void write_file(const char *path, const char *text, size_t len)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void test_relative_paths(void **state)
{
	char dir[] = "/tmp/test_domain_xml.XXXXXX", *path;
	struct vm_config *cfg;
	char want[256];
	static const char xml[] = BASIC "<os><kernel>vmlinuz</kernel>"
		"<initrd>/abs/initrd</initrd></os><devices><serial type='file'>"
		"<source path='logs/serial.log'/></serial></devices>" END;

	assert_non_null(mkdtemp(dir));
	assert_true(asprintf(&path, "%s/vm.xml", dir) > 0);
	write_file(path, xml, strlen(xml));
	cfg = must_load(path, NULL);
	snprintf(want, sizeof(want), "%s/vmlinuz", dir);
	assert_string_equal(cfg->kernel, want);
	assert_string_equal(cfg->initrd, "/abs/initrd");
	snprintf(want, sizeof(want), "%s/logs/serial.log", dir);
	assert_string_equal(cfg->serial_path, want);
	vm_config_free(cfg);
	unlink(path);
	rmdir(dir);
	free(path);
}

/* A bare file name is relative to the working directory. */
static void test_relative_to_cwd(void **state)
{
	char dir[] = "/tmp/test_domain_xml.XXXXXX", *old = getcwd(NULL, 0);
	struct vm_config *cfg;
	char want[256];
	static const char xml[] = BASIC "<os><kernel>k</kernel></os>" END;

	assert_non_null(old);
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chdir(dir), 0);
	write_file("vm.xml", xml, strlen(xml));
	cfg = must_load("vm.xml", NULL);
	snprintf(want, sizeof(want), "%s/k", dir);
	assert_string_equal(cfg->kernel, want);
	vm_config_free(cfg);
	unlink("vm.xml");
	assert_int_equal(chdir(old), 0);
	rmdir(dir);
	free(old);
}

static void test_load_errors(void **state)
{
	char dir[] = "/tmp/test_domain_xml.XXXXXX", *path;
	struct vm_config *cfg = (void *)1;
	char err[VM_CONFIG_ERR_LEN];
	char *big = padded(VM_CONFIG_MAX_XML + 1);

	assert_int_equal(vm_config_load("/nonexistent/vm.xml", &cfg, err,
					NULL, NULL), -1);
	assert_null(cfg);
	assert_string_equal(err, "/nonexistent/vm.xml: No such file or "
			    "directory");

	assert_non_null(mkdtemp(dir));
	assert_true(asprintf(&path, "%s/big.xml", dir) > 0);
	write_file(path, big, VM_CONFIG_MAX_XML + 1);
	assert_int_equal(vm_config_load(path, &cfg, err, NULL, NULL), -1);
	assert_non_null(strstr(err, "big.xml: input is larger than"));

	write_file(path, "<domain type='kvm'>\n\n<vcpu>x</vcpu></domain>", 45);
	assert_int_equal(vm_config_load(path, &cfg, err, NULL, NULL), -1);
	assert_true(!strncmp(err, path, strlen(path)));
	assert_non_null(strstr(err, "big.xml:3: <vcpu>"));

	assert_int_equal(vm_config_load(dir, &cfg, err, NULL, NULL), -1);
	assert_non_null(strstr(err, "Is a directory"));
	unlink(path);
	rmdir(dir);
	free(path);
	free(big);
}


/* ---- <disk> [issue #4: disks] ---- */

#define DISK(body) BASIC "<devices>" body "</devices>" END

static void test_disk_file(void **state)
{
	struct warnings w = { 0 };
	struct vm_config *cfg = must_parse(DISK(
		"<disk type='file' device='disk'>"
		"<driver name='qemu' type='raw' cache='none' io='native' discard='ignore'/>"
		"<source file='/var/lib/grappe/a.img'/>"
		"<target dev='vda' bus='virtio'/>"
		"<serial>SN 42</serial>"
		"<readonly/>"
		"<address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>"
		"<alias name='virtio-disk0'/><boot order='1'/>"
		"</disk>"
		"<disk type='block'><source dev='/dev/sdb'/><target dev='vdb'/></disk>"), &w);
	const struct vm_disk *d = &cfg->disks[0];

	assert_int_equal(w.count, 0);
	assert_int_equal(cfg->nr_disks, 2);
	assert_int_equal(d->type, VM_DISK_FILE);
	assert_string_equal(d->path, "/var/lib/grappe/a.img");
	assert_string_equal(d->target, "vda");
	assert_string_equal(d->serial, "SN 42");
	assert_int_equal(d->cache, VM_DISK_CACHE_NONE);
	assert_true(d->readonly);
	assert_false(d->discard);
	assert_true(d->io_uring);           /* io='native' */
	assert_int_equal(d->line, 1);
	d = &cfg->disks[1];
	assert_int_equal(d->type, VM_DISK_BLOCK);
	assert_string_equal(d->path, "/dev/sdb");
	assert_string_equal(d->target, "vdb");
	assert_string_equal(d->serial, "");
	assert_int_equal(d->cache, VM_DISK_CACHE_DEFAULT);
	assert_false(d->readonly);
	assert_true(d->discard);
	vm_config_free(cfg);
}

static void test_disk_caches(void **state)
{
	static const struct { const char *name; enum vm_disk_cache c; } t[] = {
		{ "default", VM_DISK_CACHE_DEFAULT }, { "none", VM_DISK_CACHE_NONE },
		{ "writeback", VM_DISK_CACHE_WRITEBACK },
		{ "writethrough", VM_DISK_CACHE_WRITETHROUGH },
		{ "directsync", VM_DISK_CACHE_DIRECTSYNC }, { "unsafe", VM_DISK_CACHE_UNSAFE },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char xml[512];
		struct vm_config *cfg;

		snprintf(xml, sizeof(xml), DISK("<disk type='file'><driver cache='%s' "
			 "io='threads' discard='unmap'/><source file='x'/><target dev='vda'/>"
			 "</disk>"), t[i].name);
		cfg = must_parse(xml, NULL);
		assert_int_equal(cfg->disks[0].cache, t[i].c);
		assert_true(cfg->disks[0].discard);
		assert_false(cfg->disks[0].io_uring);
		vm_config_free(cfg);
	}
}

/* Relative image paths are relative to the XML file, like the kernel's. */
static void test_disk_relative_path(void **state)
{
	char dir[] = "/tmp/test_domain_xml.XXXXXX", *path;
	struct vm_config *cfg;
	char want[256];
	static const char xml[] = DISK("<disk type='file'><source file='img/a.raw'/>"
				       "<target dev='vda'/></disk>");

	assert_non_null(mkdtemp(dir));
	assert_true(asprintf(&path, "%s/vm.xml", dir) > 0);
	write_file(path, xml, strlen(xml));
	cfg = must_load(path, NULL);
	snprintf(want, sizeof(want), "%s/img/a.raw", dir);
	assert_string_equal(cfg->disks[0].path, want);
	vm_config_free(cfg);
	unlink(path);
	rmdir(dir);
	free(path);
}

static void test_disk_serial_too_long(void **state)
{
	struct warnings w = { 0 };
	struct vm_config *cfg = must_parse(DISK(
		"<disk><source file='a'/><target dev='vda'/>\n"
		"<serial>0123456789abcdefghijKLMN</serial></disk>"), &w);

	assert_int_equal(w.count, 1);
	assert_non_null(strstr(w.last, "vm.xml:2: warning: <serial>"));
	assert_non_null(strstr(w.last, "longer than 20 bytes"));
	assert_string_equal(cfg->disks[0].serial, "0123456789abcdefghij");
	vm_config_free(cfg);
}

static void test_disk_blockio(void **state)
{
	struct warnings w = { 0 };
	struct vm_config *cfg = must_parse(DISK(
		"<disk><source file='a'/><target dev='vda'/>"
		"<blockio logical_block_size='4096' physical_block_size='65536'/></disk>"
		"<disk><source file='b'/><target dev='vdb'/><blockio physical_block_size='4096'/>"
		"</disk><disk><source file='c'/><target dev='vdc'/></disk>"), &w);

	assert_int_equal(w.count, 0);
	assert_int_equal(cfg->disks[0].logical_block, 4096);
	assert_int_equal(cfg->disks[0].physical_block, 65536);
	assert_int_equal(cfg->disks[1].logical_block, 0);     /* the store's own */
	assert_int_equal(cfg->disks[1].physical_block, 4096);
	assert_int_equal(cfg->disks[2].logical_block, 0);
	assert_int_equal(cfg->disks[2].physical_block, 0);
	vm_config_free(cfg);

	must_fail(DISK("<disk><source file='a'/><target dev='vda'/>"
		       "<blockio logical_block_size='1000'/></disk>"),
		  "<blockio> logical_block_size must be a power of two from 512 to 4096 bytes, "
		  "got '1000'");
	must_fail(DISK("<disk><source file='a'/><target dev='vda'/>"
		       "<blockio logical_block_size='8192'/></disk>"),
		  "logical_block_size must be a power of two from 512 to 4096");
	must_fail(DISK("<disk><source file='a'/><target dev='vda'/>"
		       "<blockio logical_block_size='256'/></disk>"),
		  "logical_block_size must be a power of two");
	must_fail(DISK("<disk><source file='a'/><target dev='vda'/>"
		       "<blockio physical_block_size='4k'/></disk>"),
		  "physical_block_size must be a power of two from 512 to 65536 bytes, got '4k'");
	must_fail(DISK("<disk><source file='a'/><target dev='vda'/>"
		       "<blockio logical_block_size='2048'/></disk>"),
		  "<blockio> logical_block_size must be 512 or 4096, got 2048");
	must_fail(DISK("<disk><source file='a'/><target dev='vda'/>"
		       "<blockio logical_block_size='4096' physical_block_size='512'/></disk>"),
		  "physical_block_size 512 is smaller than the 4096-byte logical block");
	must_fail(DISK("<disk><source file='a'/><target dev='vda'/>"
		       "<blockio/><blockio/></disk>"), "<blockio> appears twice");
}

static void test_disk_unknown_child_warns(void **state)
{
	struct warnings w = { 0 };
	struct vm_config *cfg = must_parse(DISK(
		"<disk><source file='a'/><target dev='vda'/><iotune/></disk>"), &w);

	assert_int_equal(w.count, 1);
	assert_non_null(strstr(w.last, "<iotune> is not supported yet"));
	assert_int_equal(cfg->nr_disks, 1);
	vm_config_free(cfg);
}

static void test_disk_errors(void **state)
{
	must_fail(DISK("<disk><target dev='vda'/></disk>"),
		  "vm.xml:1: <disk> has no <source file='...'/>");
	must_fail(DISK("<disk type='block'><source file='/dev/sda'/><target dev='vda'/></disk>"),
		  "<disk type='block'> needs <source dev='...'/>");
	must_fail(DISK("<disk><source file=''/><target dev='vda'/></disk>"),
		  "<disk type='file'> needs <source file='...'/>");
	must_fail(DISK("<disk><source file='a'/></disk>"), "<disk> has no <target dev='...'/>");
	must_fail(DISK("<disk><source file='a'/><target dev='vda' bus='sata'/></disk>"),
		  "bus 'sata' is not supported");
	must_fail(DISK("<disk><source file='a'/><target dev='sd/a'/></disk>"),
		  "<target> dev must be a short name");
	must_fail(DISK("<disk><source file='a'/><target/></disk>"),
		  "<target> dev must be a short name");
	must_fail(DISK("<disk type='network'><source file='a'/><target dev='vda'/></disk>"),
		  "<disk> type 'network' is not supported (use file, block or volume)");
	must_fail(DISK("<disk device='cdrom'><source file='a'/><target dev='hdc'/></disk>"),
		  "device 'cdrom' is not supported");
	must_fail(DISK("<disk><driver type='qcow2'/><source file='a'/><target dev='vda'/></disk>"),
		  "type 'qcow2' is not supported: disks are raw");
	must_fail(DISK("<disk><driver cache='fast'/><source file='a'/><target dev='vda'/></disk>"),
		  "cache 'fast' is not one of");
	must_fail(DISK("<disk><driver io='magic'/><source file='a'/><target dev='vda'/></disk>"),
		  "io 'magic' is not one of");
	must_fail(DISK("<disk><driver discard='maybe'/><source file='a'/><target dev='vda'/>"
		       "</disk>"), "discard 'maybe' is not unmap or ignore");
	must_fail(DISK("<disk><source file='a'/><target dev='vda'/></disk>\n"
		       "<disk><source file='b'/><target dev='vda'/></disk>"),
		  "vm.xml:2: disk target 'vda' is used twice (first on line 1)");
	must_fail(DISK("<disk><source file='a'/><source file='b'/><target dev='vda'/></disk>"),
		  "<source> appears twice");
}

static void test_too_many_disks(void **state)
{
	char *xml = malloc(16384);
	size_t n;

	assert_non_null(xml);
	n = (size_t)snprintf(xml, 16384, BASIC "<devices>");
	for (int i = 0; i <= VM_MAX_DISKS; i++)
		n += (size_t)snprintf(xml + n, 16384 - n, "<disk><source file='d%d'/>"
				      "<target dev='vd%c'/></disk>", i, 'a' + i);
	snprintf(xml + n, 16384 - n, "</devices>" END);
	must_fail(xml, "more than 16 disks");
	free(xml);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal),
		cmocka_unit_test(test_grappe_type_and_blanks),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_every_prefix_fails),
		cmocka_unit_test(test_units),
		cmocka_unit_test(test_memory_rounded_to_page),
		cmocka_unit_test(test_bad_memory),
		cmocka_unit_test(test_current_memory_warns),
		cmocka_unit_test(test_memory_from_cells),
		cmocka_unit_test(test_bad_name),
		cmocka_unit_test(test_vcpu_default_and_max),
		cmocka_unit_test(test_bad_vcpu),
		cmocka_unit_test(test_vcpu_error_line),
		cmocka_unit_test(test_bad_root),
		cmocka_unit_test(test_os),
		cmocka_unit_test(test_os_ignored_parts),
		cmocka_unit_test(test_cpuset_syntax),
		cmocka_unit_test(test_bad_cpuset),
		cmocka_unit_test(test_cells_not_partition),
		cmocka_unit_test(test_memory_sum_mismatch),
		cmocka_unit_test(test_cell_ids),
		cmocka_unit_test(test_too_many_cells),
		cmocka_unit_test(test_default_distances),
		cmocka_unit_test(test_mirrored_distances),
		cmocka_unit_test(test_bad_distances),
		cmocka_unit_test(test_actions),
		cmocka_unit_test(test_bad_actions),
		cmocka_unit_test(test_serial_types),
		cmocka_unit_test(test_serial_file),
		cmocka_unit_test(test_more_serials_warn),
		cmocka_unit_test(test_unsupported_warn_once),
		cmocka_unit_test(test_no_warn_callback),
		cmocka_unit_test(test_metadata_kept),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_billion_laughs),
		cmocka_unit_test(test_external_entities),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_silent),
		cmocka_unit_test(test_error_handler_restored),
		cmocka_unit_test(test_first_error_kept),
		cmocka_unit_test(test_null_err_and_free_null),
		cmocka_unit_test(test_example_single),
		cmocka_unit_test(test_example_two_cells),
		cmocka_unit_test(test_example_four_cells),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_relative_to_cwd),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_disk_file),		/* [issue #4: disks] */
		cmocka_unit_test(test_disk_caches),
		cmocka_unit_test(test_disk_relative_path),
		cmocka_unit_test(test_disk_serial_too_long),
		cmocka_unit_test(test_disk_blockio),
		cmocka_unit_test(test_disk_unknown_child_warns),
		cmocka_unit_test(test_disk_errors),
		cmocka_unit_test(test_too_many_disks),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	/* libxml2 keeps global tables; give them back so LSan sees no leak. */
	xmlCleanupParser();
	return rc;
}
