"""One guest over several grappe-node processes (issue: cluster), in the lab."""
import os
import signal
import subprocess
import time

import pytest

from grappe_helpers import (CLUSTER_SMPARGS, GRAPPE, Run, children, cluster_cmdline, domain_xml,
                             run_grappe, write_xml)

# Guest RAM is kept coherent by the DSM (docs/dsm.md), as for real hosts;
# the guest gets the command line recommended for clusters (docs/cluster.md).


@pytest.mark.parametrize("nodes,vcpus", [(2, 4), (4, 4)])
def test_cluster_smp(tmp_path, kvm, guest_image, nodes, vcpus):
    """Every CPU and one NUMA node per cell; smpcheck pins threads on CPUs of
    different nodes (message passing, a pipe, ping-pong, false sharing)."""
    xml = domain_xml(vcpus=vcpus, cells=nodes, nodes=nodes, mem_mib=256 * nodes,
                     cmdline=f"grappe.test=smp {CLUSTER_SMPARGS} {cluster_cmdline(vcpus, nodes)}")
    r = run_grappe(tmp_path, xml, timeout=900)
    lines = r.guest_lines()
    assert f"GRAPPE-GUEST: cpus={vcpus} nodes={nodes}" in lines, r
    assert "GRAPPE-GUEST: smp PASS" in lines, r
    assert r.rc == 0, r


def test_cluster_netns(tmp_path, kvm, guest_image):
    """Each node in its own network namespace, joined by veth and a bridge."""
    xml = domain_xml(vcpus=2, cells=2, nodes=2, mem_mib=512,
                     cmdline=f"grappe.test=smp {CLUSTER_SMPARGS} {cluster_cmdline(2, 2)}")
    r = run_grappe(tmp_path, xml, timeout=900, args=("run", "--netns"))
    assert "GRAPPE-GUEST: smp PASS" in r.guest_lines(), r
    assert r.rc == 0, r
    # Everything it created is gone.
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "grappe-" not in ns


def test_node_killed_stops_cluster(tmp_path, kvm, guest_image):
    """Kill a node mid-run: the others stop the guest, naming it, within seconds."""
    xml = domain_xml(vcpus=2, cells=2, nodes=2, mem_mib=512,
                     cmdline=f"grappe.test=info grappe.nopoweroff=1 {cluster_cmdline(2, 2)}")
    path = write_xml(tmp_path, xml)
    t0 = time.monotonic()
    p = subprocess.Popen([GRAPPE, "run", path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = b""
    try:
        # Wait until the guest is up and idle.
        os.set_blocking(p.stdout.fileno(), False)
        while b"GRAPPE-GUEST: halt" not in out:
            assert time.monotonic() - t0 < 600, out[-2000:]
            assert p.poll() is None, out[-2000:]
            chunk = p.stdout.read()
            if chunk:
                out += chunk
            time.sleep(0.2)
        nodes = children(p.pid)
        assert len(nodes) == 2, nodes
        killed_at = time.monotonic()
        os.kill(nodes[1], signal.SIGKILL)
        _, err = p.communicate(timeout=60)
        stopped_in = time.monotonic() - killed_at
    finally:
        if p.poll() is None:
            p.kill()
    err = err.decode(errors="replace")
    assert p.returncode != 0, err
    assert "node 1" in err, err
    assert stopped_in < 30, stopped_in
