// SPDX-License-Identifier: MIT
/* The <grappe:cluster> metadata: valid layouts and every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/vm_config.h"

static char xml[8192];

static const char *domain(const char *cluster)
{
	snprintf(xml, sizeof(xml),
		 "<domain type='kvm'>\n"
		 "  <name>c</name>\n"
		 "  <memory unit='MiB'>512</memory>\n"
		 "  <vcpu>2</vcpu>\n"
		 "  <cpu><numa>\n"
		 "    <cell id='0' cpus='0' memory='256' unit='MiB'/>\n"
		 "    <cell id='1' cpus='1' memory='256' unit='MiB'/>\n"
		 "  </numa></cpu>\n"
		 "  <metadata>\n"
		 "    <other:thing xmlns:other='urn:other'/>\n"
		 "%s\n"
		 "  </metadata>\n"
		 "</domain>\n", cluster);
	return xml;
}

static int load(const char *cluster, struct vm_config **cfg, char *err)
{
	const char *x = domain(cluster);

	return vm_config_parse(x, strlen(x), "c.xml", cfg, err, NULL, NULL);
}

static void test_valid(void **state)
{
	struct vm_config *cfg;
	char err[VM_CONFIG_ERR_LEN];

	(void)state;
	assert_int_equal(load("<g:cluster xmlns:g='urn:grappe:cluster:1' transport='tcp' secret='/k'>"
			      "<g:node cell='1' address='127.0.0.1:7101' cache='1MiB'/>"
			      "<g:node cell='0' address='127.0.0.1:7100' memory-max='300M'/>"
			      "</g:cluster>", &cfg, err), 0);
	assert_int_equal(cfg->cluster.nr_nodes, 2);
	assert_int_equal(cfg->cluster.nodes[0].cell, 1);
	assert_int_equal(cfg->cluster.nodes[0].cache_bytes, 1 << 20);
	assert_int_equal(cfg->cluster.nodes[1].memory_max, 300ull << 20);
	assert_string_equal(cfg->cluster.nodes[1].address, "127.0.0.1:7100");
	assert_string_equal(cfg->cluster.secret_path, "/k");
	assert_int_equal(vm_cluster_check(cfg, err), 0);
	assert_int_equal(vm_cluster_node_of_cell(cfg, 0), 1);
	assert_int_equal(vm_cluster_node_of_cell(cfg, 1), 0);
	vm_config_free(cfg);
}

static void test_absent(void **state)
{
	struct vm_config *cfg;
	char err[VM_CONFIG_ERR_LEN];

	(void)state;
	assert_int_equal(load("", &cfg, err), 0);
	assert_int_equal(cfg->cluster.nr_nodes, 0);
	assert_int_equal(vm_cluster_check(cfg, err), 0);
	vm_config_free(cfg);
}

static void expect_error(const char *cluster, const char *needle)
{
	struct vm_config *cfg = NULL;
	char err[VM_CONFIG_ERR_LEN];

	if (load(cluster, &cfg, err) == 0) {
		int rc = vm_cluster_check(cfg, err);

		vm_config_free(cfg);
		assert_int_equal(rc, -1);
	}
	if (!strstr(err, needle))
		fail_msg("expected '%s' in '%s'", needle, err);
	assert_non_null(strstr(err, "c.xml:"));
}

#define NS "xmlns:g='urn:grappe:cluster:1'"

static void test_errors(void **state)
{
	(void)state;
	expect_error("<g:cluster " NS "/>", "lists no");
	expect_error("<g:cluster " NS " transport='rdma'><g:node cell='0' address='a:1'/></g:cluster>",
		     "rdma");
	expect_error("<g:cluster " NS "><g:node address='a:1'/></g:cluster>", "cell attribute");
	expect_error("<g:cluster " NS "><g:node cell='x' address='a:1'/></g:cluster>", "not a cell");
	expect_error("<g:cluster " NS "><g:node cell='0'/></g:cluster>", "address");
	expect_error("<g:cluster " NS "><g:node cell='0' address='nohost'/></g:cluster>", "address");
	expect_error("<g:cluster " NS "><g:node cell='0' address='h:70000'/></g:cluster>", "address");
	expect_error("<g:cluster " NS "><g:node cell='0' address='h:1'/><g:node cell='0' address='h:2'/></g:cluster>",
		     "two nodes");
	expect_error("<g:cluster " NS "><g:node cell='0' address='h:1'/><g:node cell='1' address='h:1'/></g:cluster>",
		     "two nodes");
	expect_error("<g:cluster " NS "><g:node cell='0' address='h:1' cache='lots'/></g:cluster>", "size");
	expect_error("<g:cluster " NS "><g:node cell='0' address='h:1'/></g:cluster>", "exactly one");
	expect_error("<g:cluster " NS "><g:node cell='0' address='h:1'/><g:node cell='5' address='h:2'/></g:cluster>",
		     "cell 5");
	expect_error("<g:cluster " NS "><g:bogus/></g:cluster>", "unexpected");
	expect_error("<g:cluster " NS "><g:node cell='0' address='h:1'/><g:node cell='1' address='h:2'/></g:cluster>"
		     "<g:cluster " NS "/>", "second");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_absent),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests_name("cluster_xml", tests, NULL, NULL);
}
