"""One guest over several grappe-node processes (issue: cluster), in the lab."""
import os
import signal
import subprocess
import re
import time

import pytest

from grappe_helpers import (CLUSTER_SMPARGS, CLUSTER4_SMPARGS, CLUSTER_FULL_SMPARGS, GRAPPE, TwoHosts, children,
                            cluster_cmdline, domain_xml, read_log, run_grappe, stop_all,
                            wait_for_text, write_secret, write_xml)

# Guest RAM is kept coherent by the DSM (docs/dsm.md), as for real hosts;
# the guest gets the command line recommended for clusters (docs/cluster.md).

# Tests about how nodes are started and joined run two quick cross-node
# checks (ping-pong and false sharing between CPU 0 and node 1's CPU) rather
# than all of smpcheck, which test_cluster_smp runs.
CROSS_NODE_SMPARGS = ("grappe.smpargs=--only=pingpong+falseshare,--iters=20000,--pingpong-max=32,"
                      "--timeout=400")


def cluster_smp(tmp_path, nodes, vcpus, timeout=900, smpargs=CLUSTER_SMPARGS):
    xml = domain_xml(vcpus=vcpus, cells=nodes, nodes=nodes, mem_mib=256 * nodes,
                     cmdline=f"grappe.test=smp {smpargs} {cluster_cmdline(vcpus, nodes)}")
    r = run_grappe(tmp_path, xml, timeout=timeout)
    lines = r.guest_lines()
    assert f"GRAPPE-GUEST: cpus={vcpus} nodes={nodes}" in lines, r
    for n in range(nodes):
        assert any(l.startswith(f"GRAPPE-GUEST: node{n} cpus=") for l in lines), r
    for check in ("atomic", "mutex", "msgpass", "pipe", "pingpong", "falseshare"):
        assert any(l.startswith(f"GRAPPE-GUEST: check {check} PASS") for l in lines), \
            f"no {check} PASS: {r}"
    assert "GRAPPE-GUEST: smp PASS" in lines, r
    assert r.rc == 0, r
    # every node faulted pages in from the others: the DSM, not a shortcut
    moved = [int(m.group(1)) for m in re.finditer(r"dsm: .* pages in (\d+)", r.err)]
    assert len(moved) == nodes and min(moved) > 0, r


def test_cluster_smp(tmp_path, kvm, guest_image):
    """2 nodes x 2 vCPUs on the DSM: every CPU and one NUMA node per cell;
    smpcheck pins threads on CPUs of different nodes (atomics, a mutex,
    message passing, a pipe, ping-pong, false sharing)."""
    cluster_smp(tmp_path, 2, 4)


def test_cluster_dsm_4_nodes(tmp_path, kvm, guest_image):
    """4 nodes x 1 vCPU on the DSM, the same checks and counts as on 2 nodes.
    Three or more nodes need the DSM's turns (docs/dsm.md, "Bursts and
    turns"): without them this stopped making progress in the lab when three
    vCPUs on three nodes walked the same page tables; with them it passed in
    6 minutes (docs/cluster.md, "Status"). smpcheck's watchdog is 1200 s, not
    400: with other labs on the machine a run took 700 s and the watchdog
    ended it in the pipe check; this test is about the checks passing."""
    cluster_smp(tmp_path, 4, 4, timeout=1800, smpargs=CLUSTER4_SMPARGS)


@pytest.mark.slow
def test_cluster_full_counts_4_nodes(tmp_path, kvm, guest_image):
    """make soak: 4 nodes x 1 vCPU with smpcheck's own counts (four times the
    increments, a 4 MiB buffer twice around the ring, ping-pong for its
    whole time)."""
    cluster_smp(tmp_path, 4, 4, timeout=3600, smpargs=CLUSTER_FULL_SMPARGS)


def test_cluster_4_nodes_shared_ram(tmp_path, kvm, guest_image, monkeypatch):
    """4 nodes x 1 vCPU with guest RAM in one /dev/shm file (GRAPPE_RAM=shared,
    a test aid): what crosses nodes besides memory (IPIs, INIT/SIPI, I/O
    forwarding, the console, kvmclock) with four nodes, in make check's
    time; the DSM version is test_cluster_dsm_4_nodes."""
    monkeypatch.setenv("GRAPPE_RAM", "shared")
    xml = domain_xml(vcpus=4, cells=4, nodes=4, mem_mib=1024,
                     cmdline=f"grappe.test=smp {CLUSTER_SMPARGS} {cluster_cmdline(4, 4)}")
    r = run_grappe(tmp_path, xml, timeout=900)
    lines = r.guest_lines()
    assert "GRAPPE-GUEST: cpus=4 nodes=4" in lines, r
    assert "GRAPPE-GUEST: smp PASS" in lines, r
    assert r.rc == 0, r


def test_cluster_netns(tmp_path, kvm, guest_image):
    """Each node in its own network namespace, joined by veth and a bridge."""
    xml = domain_xml(vcpus=2, cells=2, nodes=2, mem_mib=512,
                     cmdline=f"grappe.test=smp {CROSS_NODE_SMPARGS} {cluster_cmdline(2, 2)}")
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


def test_nodes_started_by_hand(tmp_path, kvm, guest_image):
    """What an operator does on two hosts: each host (here a network
    namespace this test makes, joined by a veth pair) runs
    `grappe-node --listen ADDR --secret FILE VM.xml` with the same XML and
    secret; the nodes find each other, the guest boots over both, and a
    third process with the wrong secret is refused and changes nothing."""
    xml = domain_xml(vcpus=2, cells=2, mem_mib=512,
                     cmdline=f"grappe.test=smp {CROSS_NODE_SMPARGS} {cluster_cmdline(2, 2)}")
    procs = []
    with TwoHosts() as hosts:
        path, key = hosts.cluster_xml(tmp_path, xml)
        try:
            # Node 1 first: nodes may start in any order.
            for i in (1, 0):
                procs.append(hosts.start_node(i, path, key, tmp_path))
            # An intruder with another secret, posing as node 1 from node 1's host.
            bad = os.path.join(str(tmp_path), "bad.key")
            write_secret(bad)
            node_bin = os.path.join(os.path.dirname(GRAPPE), "grappe-node")
            intruder = subprocess.run(
                ["ip", "netns", "exec", hosts.ns[1], "timeout", "20", node_bin, "--node", "1",
                 "--peer", f"1={hosts.addr[1]}:7101", "--secret", bad, path],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
            assert intruder.returncode != 0, intruder
            procs[1].wait(timeout=900)
            procs[0].wait(timeout=120)
        finally:
            stop_all(procs)
    console, err0, err1 = (read_log(tmp_path, f) for f in ("node0.out", "node0.err", "node1.err"))
    assert "GRAPPE-GUEST: cpus=2 nodes=2" in console, console[-3000:] + err0[-3000:]
    assert "GRAPPE-GUEST: smp PASS" in console, console[-3000:]
    assert procs[1].returncode == 0, err0[-3000:]
    assert procs[0].returncode == 0, err1[-3000:]
    # The real nodes saw the intruder's handshake fail and kept going.
    assert re.search(r"refus|authenticat|handshake", err0 + err1), (err0 + err1)[-3000:]


def test_lossy_link_then_cut(tmp_path, kvm, guest_image):
    """The link between two hosts (namespaces, nodes started by hand) delays
    and drops packets (tc netem on both ends: 1 ms +- 0.5 ms, 0.5% loss): the
    guest still boots over both nodes and brings node 1's CPU online, TCP
    retransmitting under the DSM's and the interrupts' messages. Then the
    link is cut (the veth pair taken down): the fabric hears nothing more,
    and both nodes stop the guest within seconds, each naming the other,
    and exit non-zero; nothing hangs."""
    xml = domain_xml(vcpus=2, cells=2, mem_mib=512,
                     cmdline=f"grappe.test=info grappe.nopoweroff=1 {cluster_cmdline(2, 2)}")
    procs = []
    with TwoHosts() as hosts:
        path, key = hosts.cluster_xml(tmp_path, xml)
        for i in (0, 1):
            hosts.run_in(i, "tc", "qdisc", "add", "dev", hosts.dev[i], "root", "netem",
                         "delay", "1ms", "500us", "loss", "0.5%")
        try:
            for i in (0, 1):
                procs.append(hosts.start_node(i, path, key, tmp_path))
            console = wait_for_text(tmp_path, "node0.out", "GRAPPE-GUEST: halt", 900, procs)
            # The loss was real: netem counted the packets it dropped.
            qdisc = subprocess.run(["ip", "netns", "exec", hosts.ns[0], "tc", "-s", "qdisc",
                                    "show", "dev", hosts.dev[0]],
                                   capture_output=True, text=True).stdout
            cut_at = time.monotonic()
            hosts.ip("-n", hosts.ns[0], "link", "set", hosts.dev[0], "down")
            for p in procs:
                p.wait(timeout=60)
            stopped_in = time.monotonic() - cut_at
        finally:
            stop_all(procs)
    assert "GRAPPE-GUEST: cpus=2 nodes=2" in console, console[-3000:]
    dropped = re.search(r"dropped (\d+)", qdisc)
    assert dropped and int(dropped.group(1)) > 0, qdisc
    errs = [read_log(tmp_path, f"node{i}.err") for i in (0, 1)]
    for i, p in enumerate(procs):
        assert p.returncode not in (0, None), errs[i][-3000:]
        assert f"node {1 - i} is gone (" in errs[i], errs[i][-3000:]
    assert stopped_in < 30, (stopped_in, errs)


def test_guest_larger_than_a_node(tmp_path, kvm, guest_image):
    """Each node may hold 256 MiB (cgroup v2 memory.max): its own 192 MiB cell
    and a 16 MiB cache of the other cell's pages. The guest writes and checks
    272 MiB, more than any one node may hold, so the cache must evict and write
    back pages and fetch them again, and the data must survive it."""
    limits = "memory-max='256MiB' cache='16MiB'"
    xml = domain_xml(vcpus=2, cells=2, nodes=2, mem_mib=384, node_attrs={0: limits, 1: limits},
                     cmdline="grappe.test=memtouch grappe.memmib=272 grappe.mempasses=1 "
                     "grappe.memtimeout=1800 " + cluster_cmdline(2, 2))
    # 8 minutes in a quiet lab, 13 with other labs beside it (every page
    # that spills over moves two or three times at milliseconds each)
    r = run_grappe(tmp_path, xml, timeout=2000)
    lines = r.guest_lines()
    assert "cannot apply memory-max" not in r.err, r
    assert any(l.startswith("GRAPPE-GUEST: memtouch PASS mib=272") for l in lines), r
    assert r.rc == 0, r
    # Both nodes' memory was used, and the cache bound was what kept it small.
    numa = next(l for l in lines if "memtouch numa" in l)
    assert "N0=" in numa and "N1=" in numa, numa
    ev = [int(m.group(1)) for m in re.finditer(r"dsm: .* evictions (\d+)", r.err)]
    assert len(ev) == 2 and max(ev) > 0, r
    caps = [int(m.group(1)) for m in re.finditer(r"cache max (\d+) pages", r.err)]
    assert caps and max(caps) <= 16 * 256, r
