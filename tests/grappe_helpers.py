"""Helpers for system tests that boot the test guest under grappe.

They run inside the lab (ci/lab), where /dev/kvm can boot a stock kernel.
"""
import os
import signal
import subprocess
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAPPE = os.path.join(ROOT, "build", "bin", "grappe")
KERNEL = os.path.join(ROOT, "build", "guest", "vmlinuz")
INITRD = os.path.join(ROOT, "build", "guest", "initramfs.gz")


# Between cells on different nodes a page costs a hundred times a local one:
# the SLIT says so (docs/cluster.md, "Recommended guest settings"). Above
# Linux's RECLAIM_DISTANCE (30) the guest's scheduler stops spreading forks,
# execs and wake-ups over cells, which keeps tasks near their memory.
CLUSTER_DISTANCE = 40


def cluster_cmdline(vcpus, nodes):
    """The guest command line recommended for a cluster (docs/cluster.md):
    the CPUs of nodes other than the I/O node (node 0) run what is placed on
    them, without the scheduler's balancing, ticks or RCU callbacks, and come
    online only when init runs (maxcpus=: through the kernel's own boot every
    CPU ticks periodically and takes every text-patching IPI, and on another
    node each of those moves the kernel's page tables)."""
    first = next(i for i in range(vcpus) if i * nodes // vcpus > 0) if nodes > 1 else vcpus
    out = "nokaslr numa_balancing=disable"
    if first < vcpus:
        cpus = f"{first}-{vcpus - 1}" if first < vcpus - 1 else f"{first}"
        out += f" isolcpus={cpus} nohz_full={cpus} rcu_nocbs={cpus} maxcpus={first}"
    return out


# smpcheck sized for memory that moves between nodes at a few hundred pages
# a second (the lab: nested, emulated): the checks are the same, with less
# data (docs/testing.md).
CLUSTER_SMPARGS = "grappe.smpargs=--mib=1,--iters=50000,--pingpong-max=32,--timeout=400"
# The same checks over 4 DSM nodes, with a watchdog that a loaded machine does not trip.
CLUSTER4_SMPARGS = CLUSTER_SMPARGS.replace("--timeout=400", "--timeout=1200")
# smpcheck's own counts (--iters=200000, --mib=4, --rounds=2): make soak.
CLUSTER_FULL_SMPARGS = "grappe.smpargs=--timeout=3000"


def cells_xml(vcpus, cells, mem_mib, remote=20):
    """A <cpu><numa> block splitting vCPUs and memory evenly over cells."""
    if cells <= 1:
        return ""
    per_mem = mem_mib // cells
    out = []
    for c in range(cells):
        cpus = [i for i in range(vcpus) if i * cells // vcpus == c]
        dist = "".join(
            f"<sibling id='{d}' value='{10 if d == c else remote}'/>" for d in range(cells))
        cpus_attr = f" cpus='{cpus[0]}-{cpus[-1]}'" if cpus else ""
        out.append(f"<cell id='{c}'{cpus_attr} memory='{per_mem}' unit='MiB'>"
                   f"<distances>{dist}</distances></cell>")
    return "<cpu><numa>" + "".join(out) + "</numa></cpu>"


def cluster_xml(nodes, base_port=7100, node_attrs=None):
    """<metadata> placing cell i on node i, all on this machine."""
    if nodes <= 0:
        return ""
    attrs = node_attrs or {}
    rows = "".join(
        f"<grappe:node cell='{i}' address='127.0.0.1:{base_port + i}' {attrs.get(i, '')}/>"
        for i in range(nodes))
    return ("<metadata><grappe:cluster xmlns:grappe='urn:grappe:cluster:1' transport='tcp'>"
            + rows + "</grappe:cluster></metadata>")


def free_port_base(n):
    """A run of n free TCP ports on loopback (tests may run back to back)."""
    import socket
    for base in range(20000 + (os.getpid() % 200) * 50, 60000, 50):
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free ports")


def domain_xml(name="t", vcpus=2, cells=1, mem_mib=512, cmdline="",
               on_crash="destroy", extra="", nodes=0, node_attrs=None):
    # quiet: in the lab every console byte costs emulated exits (as for QEMU).
    cmd = f"console=ttyS0 panic=-1 quiet {cmdline}".strip()
    return textwrap.dedent(f"""\
        <domain type='kvm'>
          <name>{name}</name>
          <memory unit='MiB'>{mem_mib}</memory>
          <vcpu>{vcpus}</vcpu>
          <os>
            <type arch='x86_64'>hvm</type>
            <kernel>{KERNEL}</kernel>
            <initrd>{INITRD}</initrd>
            <cmdline>{cmd}</cmdline>
          </os>
          {cells_xml(vcpus, cells, mem_mib, CLUSTER_DISTANCE if nodes > 1 else 20)}
          <on_poweroff>destroy</on_poweroff>
          <on_reboot>destroy</on_reboot>
          <on_crash>{on_crash}</on_crash>
          <devices>
            <serial type='stdio'/>
            {extra}
          </devices>
          {cluster_xml(nodes, free_port_base(nodes) if nodes else 0, node_attrs)}
        </domain>
        """)


class Run(str):
    """What a run printed and how it ended. It is also the text that says so
    (a str): pytest shows an assertion's message in full only when it is a
    str, and cuts anything else to 240 characters, which hid why runs failed
    in CI. Tests write `assert cond, r`."""

    def __new__(cls, rc, out, err, seconds):
        guest = "\n".join(l.strip() for l in out.splitlines() if "GRAPPE-GUEST:" in l)
        tail = "\n".join(out.splitlines()[-40:])
        text = (f"rc={rc} after {seconds:.1f}s\n--- guest's result lines ---\n{guest[-4000:]}"
                f"\n--- console tail ---\n{tail}\n--- stderr ---\n{err[-3000:]}")
        self = super().__new__(cls, text)
        self.rc, self.out, self.err, self.seconds = rc, out, err, seconds
        return self

    def guest_lines(self):
        return [l.strip() for l in self.out.splitlines() if "GRAPPE-GUEST:" in l]


def write_xml(tmp_path, xml):
    path = os.path.join(str(tmp_path), "vm.xml")
    with open(path, "w") as f:
        f.write(xml)
    return path


def run_grappe(tmp_path, xml, timeout=600, args=("run",)):
    """Runs grappe to its end. On timeout the whole process group goes
    (grappe and its nodes: a node holding the output pipes open would make
    the wait endless) and the run is returned with rc=None and what it
    printed, so the test's assertions show where it stopped."""
    path = write_xml(tmp_path, xml)
    t0 = time.monotonic()
    p = subprocess.Popen([GRAPPE, *args, path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc = None
        err += f"\n[harness: killed after {timeout} s]".encode()
    return Run(rc, out.decode(errors="replace"), err.decode(errors="replace"),
               time.monotonic() - t0)


def children(pid):
    """PIDs of a process's children (the nodes grappe run started)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class TwoHosts:
    """Two "hosts" for nodes started by hand: network namespaces made by the
    test, joined by a veth pair (one end in each), with addresses in a /24
    that exists only between them. Removed on exit, whatever happened."""

    def __init__(self):
        tag = f"gt{os.getpid() % 100000}"
        self.ns = [f"{tag}-a", f"{tag}-b"]
        self.dev = [f"{tag}-0", f"{tag}-1"]
        subnet = f"10.214.{os.getpid() % 250}"
        self.addr = [f"{subnet}.1", f"{subnet}.2"]

    @staticmethod
    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def run_in(self, i, *cmd):
        """Runs a command in host i's namespace to its end (tc, ip, ...)."""
        subprocess.run(["ip", "netns", "exec", self.ns[i], *cmd], check=True,
                       capture_output=True)

    def __enter__(self):
        try:
            for n in self.ns:
                self.ip("netns", "add", n)
            self.ip("link", "add", self.dev[0], "type", "veth", "peer", "name", self.dev[1])
            for i, n in enumerate(self.ns):
                self.ip("link", "set", self.dev[i], "netns", n)
                self.ip("-n", n, "addr", "add", f"{self.addr[i]}/24", "dev", self.dev[i])
                self.ip("-n", n, "link", "set", self.dev[i], "up")
                self.ip("-n", n, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        # Deleting a namespace deletes the veth end in it, and with it the pair.
        for n in self.ns:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        return False

    def cluster_xml(self, tmp_path, xml, secret=None):
        """The domain XML with one node on each host, and the secret file
        both nodes are given (made here, mode 0600, if not named)."""
        if secret is None:
            secret = os.path.join(str(tmp_path), "cluster.key")
            write_secret(secret)
        xml = xml.replace("</domain>", "<metadata><grappe:cluster xmlns:grappe='urn:grappe:cluster:1' "
                          f"secret='{secret}'><grappe:node cell='0' address='{self.addr[0]}:7100'/>"
                          f"<grappe:node cell='1' address='{self.addr[1]}:7100'/></grappe:cluster>"
                          "</metadata></domain>")
        return write_xml(tmp_path, xml), secret

    def start_node(self, i, xml_path, secret, logdir):
        """`grappe-node --listen ADDR --secret FILE VM.xml` on host i, as an
        operator starts it (ip netns exec execs the node: the PID is the
        node's). Its output goes to files (nodeI.out, nodeI.err in logdir),
        which nothing has to drain while the test waits."""
        node_bin = os.path.join(os.path.dirname(GRAPPE), "grappe-node")
        with open(os.path.join(str(logdir), f"node{i}.out"), "wb") as out, \
                open(os.path.join(str(logdir), f"node{i}.err"), "wb") as err:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.ns[i], node_bin, "--listen", f"{self.addr[i]}:7100",
                 "--secret", secret, xml_path], stdin=subprocess.DEVNULL, stdout=out, stderr=err)


def read_log(logdir, name):
    with open(os.path.join(str(logdir), name), "rb") as f:
        return f.read().decode(errors="replace")


def wait_for_text(logdir, name, text, timeout, procs=()):
    """Waits until file `name` in logdir holds `text`; fails with its tail if
    the time runs out or one of procs exits first."""
    t0 = time.monotonic()
    while True:
        got = read_log(logdir, name)
        if text in got:
            return got
        assert time.monotonic() - t0 < timeout, f"no {text!r} in {timeout} s:\n{got[-3000:]}"
        for p in procs:
            assert p.poll() is None, f"a node exited ({p.returncode}) before {text!r}:\n{got[-3000:]}"
        time.sleep(0.5)


def write_secret(path):
    """A fresh 32-byte cluster secret; grappe-node refuses one others can read."""
    with open(path, "wb") as f:
        f.write(os.urandom(32))
    os.chmod(path, 0o600)


def stop_all(procs):
    """Kills whichever of the processes this test started is still running."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
