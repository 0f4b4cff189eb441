"""The reference: QEMU/KVM boots the test guest (Debian's stock cloud kernel,
our busybox initramfs) with 2 vCPUs in 2 NUMA nodes and smpcheck passes.

This proves the lab, the guest image and smpcheck before grappe is asked to
do the same; grappe's own tests compare against it. Runs inside ci/lab.
"""

import json

import lab_helpers

VCPUS = 2
NODES = 2
MEM_MIB = 512
TIMEOUT_S = 300     # ~10 s in the lab; generous for a loaded machine


def test_qemu_kvm_boots_guest_and_smpcheck_passes(kvm, guest_image, results_dir):
    kernel, initrd = guest_image
    cmd = lab_helpers.qemu_kvm_cmd(vcpus=VCPUS, mem_mib=MEM_MIB, numa_nodes=NODES,
                                   test="smp", kernel=kernel, initrd=initrd)
    log = results_dir / "console.log"
    r = lab_helpers.run_capture(cmd, timeout=TIMEOUT_S, log_path=log,
                                markers=("GRAPPE-GUEST: init", "GRAPPE-GUEST: poweroff"))
    rep = lab_helpers.parse_guest(r.output)
    context = f"\n--- console tail ({log}) ---\n{r.tail()}"

    assert not r.timed_out, f"guest did not finish within {TIMEOUT_S}s" + context
    assert rep.saw("init"), "the guest's /init never ran" + context
    assert rep.results.get("smp") == "PASS", \
        f"smpcheck: {rep.results.get('smp', 'no result line')}" + context
    assert (rep.cpus, rep.nodes) == (VCPUS, NODES), \
        f"guest saw cpus={rep.cpus} nodes={rep.nodes}, expected {VCPUS}/{NODES}" + context
    assert rep.saw("poweroff") and r.returncode == 0, \
        f"guest did not power off cleanly (qemu exit {r.returncode})" + context

    # Timings for whoever compares grappe with QEMU later.
    (results_dir / "timing.json").write_text(json.dumps({
        "init_s": r.marker_times.get("GRAPPE-GUEST: init"),
        "poweroff_s": r.marker_times.get("GRAPPE-GUEST: poweroff"),
        "total_s": r.elapsed,
    }) + "\n")


def test_qemu_kvm_guest_powers_off_on_acpi_power_button(kvm, guest_image, results_dir, tmp_path):
    """A power-button press (QMP system_powerdown; virsh shutdown) powers the
    guest off: the path grappe's shutdown tests rely on."""
    import subprocess

    kernel, initrd = guest_image
    sock = tmp_path / "qmp.sock"
    log = results_dir / "console.log"
    cmd = lab_helpers.qemu_kvm_cmd(vcpus=1, mem_mib=256, test="info",
                                   append="grappe.nopoweroff=1", kernel=kernel, initrd=initrd)
    cmd += ["-qmp", f"unix:{sock},server=on,wait=off"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            up = lab_helpers.wait_for_text(log, "GRAPPE-GUEST: halt", TIMEOUT_S, proc)
            assert up, "guest did not come up and wait\n" + log.read_text(errors="replace")[-3000:]
            answer = lab_helpers.qmp(sock, "system_powerdown")
            assert answer == {"return": {}}, answer
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text(errors="replace")
    assert "GRAPPE-GUEST: power button" in text, text[-3000:]
    assert rc == 0, f"qemu exit {rc}\n" + text[-3000:]
