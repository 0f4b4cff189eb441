// SPDX-License-Identifier: MIT
/* <grappe:volume> and <disk type='volume'>: valid layouts and every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/vm_config.h"

#define CLUSTER "<g:cluster xmlns:g='urn:grappe:cluster:1'>" \
		"<g:node cell='0' address='127.0.0.1:7100'/>" \
		"<g:node cell='1' address='127.0.0.1:7101'/></g:cluster>"
#define VOLDISK "<disk type='volume' device='disk'><source pool='grappe' volume='data'/>" \
		"<target dev='vda' bus='virtio'/></disk>"

static int load(const char *metadata, const char *disks, struct vm_config **cfg, char *err)
{
	char x[8192];

	snprintf(x, sizeof(x),
		 "<domain type='kvm'>\n"
		 "  <name>v</name>\n"
		 "  <memory unit='MiB'>512</memory>\n"
		 "  <vcpu>2</vcpu>\n"
		 "  <cpu><numa>\n"
		 "    <cell id='0' cpus='0' memory='256' unit='MiB'/>\n"
		 "    <cell id='1' cpus='1' memory='256' unit='MiB'/>\n"
		 "  </numa></cpu>\n"
		 "  <metadata>\n%s\n  </metadata>\n"
		 "  <devices>\n%s\n  </devices>\n"
		 "</domain>\n", metadata, disks);
	*cfg = NULL;
	return vm_config_parse(x, strlen(x), "/etc/vm/v.xml", cfg, err, NULL, NULL);
}

static void test_valid(void **state)
{
	struct vm_config *cfg;
	char err[VM_CONFIG_ERR_LEN];

	(void)state;
	assert_int_equal(load(CLUSTER
			      "<g:volume xmlns:g='urn:grappe:cluster:1' name='data' size='1GiB' "
			      "chunk='256KiB'>\n"
			      "<g:store node='0' path='d0.img'/>\n"
			      "<g:store node='1' path='/dev/vdb'/>\n"
			      "<g:store node='1' path='d2.img'/>\n"
			      "</g:volume>", VOLDISK, &cfg, err), 0);
	assert_int_equal(cfg->nr_volumes, 1);
	assert_string_equal(cfg->volumes[0].name, "data");
	assert_int_equal(cfg->volumes[0].size, 1ull << 30);
	assert_int_equal(cfg->volumes[0].chunk, 256 << 10);
	assert_int_equal(cfg->volumes[0].replicas, 2);	/* the default */
	assert_int_equal(cfg->volumes[0].nr_stores, 3);
	/* From a buffer there is no base directory: relative stays relative. */
	assert_string_equal(cfg->volumes[0].stores[0].path, "d0.img");
	assert_string_equal(cfg->volumes[0].stores[1].path, "/dev/vdb");
	assert_int_equal(cfg->volumes[0].stores[2].node, 1);
	assert_int_equal(cfg->disks[0].type, VM_DISK_VOLUME);
	assert_string_equal(cfg->disks[0].volume, "data");
	assert_null(cfg->disks[0].path);
	assert_ptr_equal(vm_config_volume(cfg, "data"), &cfg->volumes[0]);
	vm_config_free(cfg);
}

/* One store, no cluster: replicas default to 1, the chunk to 1 MiB. */
static void test_single_store(void **state)
{
	struct vm_config *cfg;
	char err[VM_CONFIG_ERR_LEN];

	(void)state;
	assert_int_equal(load("<g:volume xmlns:g='urn:grappe:cluster:1' name='x' size='64M'>"
			      "<g:store path='/a'/></g:volume>", "", &cfg, err), 0);
	assert_int_equal(cfg->volumes[0].replicas, 1);
	assert_int_equal(cfg->volumes[0].chunk, 1 << 20);
	assert_int_equal(cfg->volumes[0].stores[0].node, 0);
	vm_config_free(cfg);
}

static void expect_error(const char *metadata, const char *disks, const char *needle)
{
	struct vm_config *cfg;
	char err[VM_CONFIG_ERR_LEN] = "";

	if (load(metadata, disks, &cfg, err) == 0) {
		vm_config_free(cfg);
		fail_msg("accepted, expected an error with '%s'", needle);
	}
	if (!strstr(err, needle))
		fail_msg("error '%s' lacks '%s'", err, needle);
	if (!strstr(err, "v.xml:"))
		fail_msg("error '%s' does not name the file and line", err);
}

#define VOL(attrs, stores) "<g:volume xmlns:g='urn:grappe:cluster:1' " attrs ">" stores "</g:volume>"
#define TWO "<g:store node='0' path='/a'/><g:store node='1' path='/b'/>"

static void test_errors(void **state)
{
	(void)state;
	expect_error(VOL("size='1G'", TWO), "", "needs name=");
	expect_error(VOL("name='Bad!' size='1G'", TWO), "", "needs name=");
	expect_error(VOL("name='d'", TWO), "", "non-zero multiple of 4 KiB");
	expect_error(VOL("name='d' size='1000'", TWO), "", "non-zero multiple of 4 KiB");
	expect_error(VOL("name='d' size='lots'", TWO), "", "is not a size");
	expect_error(VOL("name='d' size='1G' chunk='3MiB'", TWO), "", "power of two");
	expect_error(VOL("name='d' size='1G' chunk='4KiB'", TWO), "", "power of two");
	expect_error(VOL("name='d' size='1G' replicas='3'", TWO), "", "replicas=3 but only 2");
	expect_error(VOL("name='d' size='1G' replicas='0'", TWO), "", "replicas='0'");
	expect_error(VOL("name='d' size='1G'", ""), "", "lists no <grappe:store>");
	expect_error(VOL("name='d' size='1G'", "<g:store node='0'/>"), "", "needs path=");
	expect_error(VOL("name='d' size='1G'", "<g:store node='x' path='/a'/>"), "", "node='x'");
	expect_error(VOL("name='d' size='1G'", "<g:disk/>"), "", "unexpected <disk>");
	expect_error(VOL("name='d' size='1G'", "<g:store path='/a'/><g:store path='/a'/>"), "",
		     "listed twice");
	expect_error(VOL("name='d' size='1G'", TWO) VOL("name='d' size='1G'", TWO), "",
		     "defined twice");
	/* Store node 1 without a cluster of two nodes. */
	expect_error(VOL("name='data' size='1G'", TWO), "", "store on node 1");
	expect_error(CLUSTER, VOLDISK, "no <grappe:volume name='data'>");
	expect_error(CLUSTER VOL("name='data' size='1G'", TWO),
		     "<disk type='volume'><source pool='default' volume='data'/>"
		     "<target dev='vda'/></disk>", "pool='grappe'");
	expect_error(CLUSTER VOL("name='data' size='1G'", TWO),
		     "<disk type='volume'><target dev='vda'/></disk>", "has no <source pool");
	expect_error(CLUSTER VOL("name='data' size='1G'", TWO),
		     VOLDISK "<disk type='volume'><source pool='grappe' volume='data'/>"
		     "<target dev='vdb'/></disk>", "already disk vda");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_single_store),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
