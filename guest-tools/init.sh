#!/bin/sh
# /init of the grappe test guest (busybox initramfs built by ci/build-guest).
#
# Harnesses read the serial console: every line meant for them starts with
# "GRAPPE-GUEST: ". The first one, "GRAPPE-GUEST: init", is printed before
# anything else because the boot benchmark times it (process start -> init).
#
# Kernel command line (read from /proc/cmdline; dotted names are not passed to
# init by the kernel, which keeps init's environment clean):
#   grappe.test=info     print CPUs and NUMA nodes (the default)
#   grappe.test=smp      run smpcheck: "GRAPPE-GUEST: smp PASS" / "smp FAIL why"
#   grappe.test=panic    crash the kernel (sysrq c) to test panic handling
#   grappe.test=shell    a shell on the console; power off when it exits
#   grappe.smpargs=A,B   extra smpcheck arguments, comma separated
#                        (e.g. grappe.smpargs=--iters=1000,--mib=1)
#   grappe.nopoweroff=1  stay up (halt loop) instead of powering off
# Then the guest powers off ("poweroff -f": ACPI S5; with -no-reboot QEMU exits).
# An ACPI power-button press (QMP system_powerdown) powers it off at any time.
echo "GRAPPE-GUEST: init"

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# The cpio's own /dev/console is hidden by devtmpfs now; keep using the console.
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm /tmp /run
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
read -r uptime _ </proc/uptime
echo "GRAPPE-GUEST: uptime=$uptime kernel=$(uname -r)"

# Value of a grappe.* parameter, empty if absent.
param() {
    # shellcheck disable=SC2013  # words are what we want
    for word in $(cat /proc/cmdline); do
        case "$word" in
            "$1="*) echo "${word#*=}"; return ;;
        esac
    done
}

# Virtio drivers are modules in Debian's cloud kernel: load them only when a
# virtio PCI device (vendor 0x1af4) exists, so a plain boot stays fast.
load_virtio() {
    for v in /sys/bus/pci/devices/*/vendor; do
        [ -r "$v" ] || continue
        if [ "$(cat "$v")" = "0x1af4" ]; then
            for m in virtio_pci virtio_blk virtio_net virtio_console; do
                modprobe "$m" 2>/dev/null
            done
            echo "GRAPPE-GUEST: virtio modules loaded"
            return
        fi
    done
}

finish() {
    if [ "$(param grappe.nopoweroff)" = 1 ]; then
        echo "GRAPPE-GUEST: halt"
        while :; do sleep 3600; done
    fi
    echo "GRAPPE-GUEST: poweroff"
    sync
    poweroff -f
    # poweroff should not return; if the machine has no way to power off,
    # say so and stop here (init must never exit: that panics the kernel).
    echo "GRAPPE-GUEST: poweroff failed"
    while :; do sleep 3600; done
}

# pvpanic tells the hypervisor about a kernel panic (on_crash); it is a module
# in Debian's cloud kernel.
modprobe pvpanic-mmio 2>/dev/null
load_virtio
# ACPI power button -> acpid -> /etc/acpi/PWRF/00000080 -> poweroff, so that
# a host-side shutdown request (QMP system_powerdown) ends the guest.
if modprobe button 2>/dev/null && modprobe evdev 2>/dev/null; then
    acpid -c /etc/acpi -l /tmp/acpid.log
fi
test=$(param grappe.test)
[ -n "$test" ] || test=info
echo "GRAPPE-GUEST: test=$test"

case "$test" in
    info)
        smpcheck --info
        ;;
    smp)
        args=$(param grappe.smpargs | tr ',' ' ')
        # smpcheck streams its own per-check lines; its FAIL line says why,
        # which the summary repeats.
        # shellcheck disable=SC2086  # $args is a list of words
        { smpcheck $args 2>&1; echo $? >/tmp/smp.rc; } | tee /tmp/smp.log
        rc=$(cat /tmp/smp.rc)
        if [ "$rc" = 0 ]; then
            echo "GRAPPE-GUEST: smp PASS"
        else
            why=$(grep 'smpcheck FAIL' /tmp/smp.log | tail -n 1 | sed 's/.*smpcheck FAIL //')
            echo "GRAPPE-GUEST: smp FAIL rc=$rc ${why:-no reason printed}"
        fi
        ;;
    panic)
        echo "GRAPPE-GUEST: panic now"
        echo 1 >/proc/sys/kernel/sysrq
        echo c >/proc/sysrq-trigger
        echo "GRAPPE-GUEST: panic FAIL still alive"
        ;;
    shell)
        echo "GRAPPE-GUEST: shell (exit to power off)"
        setsid cttyhack sh -l
        ;;
    *)
        echo "GRAPPE-GUEST: $test FAIL unknown test"
        ;;
esac
finish
