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
#   grappe.test=demo     make demo: CPUs and NUMA nodes, then /dev/vda mounted
#                        (ext4 made on first boot) with a file written and read back
#   grappe.smpargs=A,B   extra smpcheck arguments, comma separated
#                        (e.g. grappe.smpargs=--iters=1000,--mib=1)
#   grappe.test=memtouch write a pattern over grappe.memmib=N MiB (default 64) and
#                        verify it, grappe.mempasses=N times (default 2), within
#                        grappe.memtimeout=S seconds (default 600)
#                        (guest-tools/memtouch.c): "GRAPPE-GUEST: memtouch PASS"
#   grappe.nopoweroff=1  stay up (halt loop) instead of powering off
#   grappe.test=disk     [disks] ext4 on /dev/vda (files + checksums, remount, check),
#                        then blkcheck stamp + random I/O on the raw device after it:
#                        "GRAPPE-GUEST: disk PASS" / "disk FAIL why"
#   grappe.test=disk-verify  [disks] a later boot: the files and the stamp are intact
#   grappe.test=disk-ro  [disks] /dev/vda is read-only: reads work, writes are refused
#   grappe.diskserial=S  [disks] the serial /dev/vda must report
#   grappe.diskblocks=L/P [disks] the logical/physical block sizes /dev/vda must report
#   grappe.diskseed=N    [disks] seed of the blkcheck patterns (default 4242)
#   grappe.diskrounds=N  [disks] rounds of blkcheck random (its default if absent)
#   grappe.diskcpu=N     [disks] blkcheck (stamp, verify, random) pinned to CPU N: its I/O
#                        goes through that CPU's queue (tests/test_disk_queues.py)
#   grappe.test=fio      [disks] fio on /dev/vda (fio itself on /dev/vdb, fio-tools.img
#                        from ci/build-guest, run in a chroot there): sequential 1 MiB
#                        and random 4 KiB reads and writes, O_DIRECT, one line each:
#                        "GRAPPE-GUEST: fio JOB kib_s=N iops=N"; "fio PASS" / "fio FAIL why"
#   grappe.fiosecs=N     [disks] seconds per fio job (default 10)
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

# CPUs the command line kept offline through the kernel's boot (maxcpus=:
# a cluster's remote CPUs, docs/cluster.md "The guest's command line") come
# online now, before anything runs on them.
late=""
for c in /sys/devices/system/cpu/cpu[0-9]*; do
    if [ -w "$c/online" ] && [ "$(cat "$c/online")" = 0 ]; then
        echo 1 >"$c/online" || echo "GRAPPE-GUEST: cannot online ${c##*/}"
        late="$late ${c##*/cpu}"
    fi
done
if [ -n "$late" ]; then
    read -r uptime _ </proc/uptime
    echo "GRAPPE-GUEST: cpus online late:$late uptime=$uptime"
fi

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

# ---- [disks] grappe.test=disk, disk-verify, disk-ro (tests/test_disk.py) ----
# Layout of /dev/vda: ext4 on the first DISK_FS_MIB MiB, a blkcheck stamp of
# DISK_STAMP_MIB MiB right after it (the host recomputes it), then a scratch
# area of DISK_SCRATCH_MIB MiB for random I/O.
DISK_FS_MIB=48
DISK_STAMP_MIB=2
DISK_SCRATCH_MIB=32

disk_fail() {
    echo "GRAPPE-GUEST: $test FAIL $*"
    umount /mnt 2>/dev/null
    return 1
}

disk_wait() {
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ -b /dev/vda ] || { disk_fail "no /dev/vda"; return 1; }
    have="$(cat /sys/block/vda/queue/logical_block_size)/$(cat /sys/block/vda/queue/physical_block_size)"
    echo "GRAPPE-GUEST: disk vda sectors=$(cat /sys/block/vda/size) ro=$(cat /sys/block/vda/ro)" \
        "queues=$(find /sys/block/vda/mq -mindepth 1 -maxdepth 1 | wc -l) serial=$(cat /sys/block/vda/serial 2>/dev/null)" \
        "msix=$(grep -c 'virtio0-' /proc/interrupts)" "blocks=$have"
    want=$(param grappe.diskblocks)
    if [ -n "$want" ] && [ "$have" != "$want" ]; then
        disk_fail "logical/physical block sizes are $have, expected $want"
        return 1
    fi
    want=$(param grappe.diskserial)
    if [ -n "$want" ] && [ "$(cat /sys/block/vda/serial 2>/dev/null)" != "$want" ]; then
        disk_fail "serial is '$(cat /sys/block/vda/serial 2>/dev/null)', expected '$want'"
        return 1
    fi
}

# blkcheck on the CPU grappe.diskcpu names (blk-mq: that CPU's queue), else anywhere.
on_disk_cpu() {
    cpu=$(param grappe.diskcpu)
    if [ -n "$cpu" ]; then
        taskset -c "$cpu" "$@"
    else
        "$@"
    fi
}

disk_seed() {
    seed=$(param grappe.diskseed)
    echo "${seed:-4242}"
}

# The files and the stamp written by disk_test are there, unchanged ($1: mount options).
disk_check() {
    mount -t ext4 -o "${1:-rw}" /dev/vda /mnt || { disk_fail "cannot mount /dev/vda"; return 1; }
    (cd /mnt/data && sha256sum -c -s ../SHA256SUMS) || { disk_fail "file checksums differ"; return 1; }
    echo "GRAPPE-GUEST: disk files ok ($(wc -l </mnt/SHA256SUMS) files)"
    umount /mnt || { disk_fail "umount"; return 1; }
    if command -v fsck.ext4 >/dev/null; then
        fsck.ext4 -n -f /dev/vda >/tmp/fsck.log 2>&1 || { cat /tmp/fsck.log; disk_fail "fsck.ext4 found errors"; return 1; }
    fi
    on_disk_cpu blkcheck verify /dev/vda $DISK_FS_MIB $DISK_STAMP_MIB "$(disk_seed)" || { disk_fail "stamp differs"; return 1; }
}

disk_test() {
    disk_wait || return 1
    if command -v mkfs.ext4 >/dev/null; then
        echo "GRAPPE-GUEST: disk mkfs=ext4"
        mkfs.ext4 -q -F -b 4096 /dev/vda ${DISK_FS_MIB}M || { disk_fail "mkfs.ext4"; return 1; }
    else
        echo "GRAPPE-GUEST: disk mkfs=ext2"
        # busybox: ext2, which the ext4 driver mounts
        mke2fs -F -b 4096 /dev/vda $((DISK_FS_MIB * 1024)) >/dev/null || { disk_fail "mke2fs"; return 1; }
    fi
    mount -t ext4 /dev/vda /mnt || { disk_fail "cannot mount the new filesystem"; return 1; }
    mkdir -p /mnt/data/sub
    i=0
    while [ $i -lt 8 ]; do
        dd if=/dev/urandom of=/mnt/data/f$i bs=4k count=$((8 + i * 16)) 2>/dev/null || { disk_fail "write f$i"; return 1; }
        i=$((i + 1))
    done
    dd if=/dev/urandom of=/mnt/data/sub/big bs=64k count=64 2>/dev/null || { disk_fail "write big"; return 1; }
    (cd /mnt/data && sha256sum f* sub/big >../SHA256SUMS) || { disk_fail "sha256sum"; return 1; }
    sync
    umount /mnt || { disk_fail "umount"; return 1; }
    echo 3 >/proc/sys/vm/drop_caches
    [ -n "$(param grappe.diskcpu)" ] && echo "GRAPPE-GUEST: disk blkcheck on CPU $(param grappe.diskcpu)"
    on_disk_cpu blkcheck stamp /dev/vda $DISK_FS_MIB $DISK_STAMP_MIB "$(disk_seed)" || { disk_fail "stamp"; return 1; }
    disk_check || return 1
    echo "GRAPPE-GUEST: disk random I/O"
    # shellcheck disable=SC2046  # no rounds argument when the parameter is absent
    on_disk_cpu blkcheck random /dev/vda $((DISK_FS_MIB + DISK_STAMP_MIB)) $DISK_SCRATCH_MIB "$(disk_seed)" \
        $(param grappe.diskrounds) || { disk_fail "random I/O"; return 1; }
    echo "GRAPPE-GUEST: disk PASS"
}

disk_verify() {
    disk_wait || return 1
    disk_check || return 1
    echo "GRAPPE-GUEST: disk-verify PASS"
}

disk_ro() {
    disk_wait || return 1
    [ "$(cat /sys/block/vda/ro)" = 1 ] || { disk_fail "/dev/vda is not read-only"; return 1; }
    disk_check ro || return 1
    blkcheck rofail /dev/vda || { disk_fail "a write was accepted"; return 1; }
    echo "GRAPPE-GUEST: disk-ro PASS"
}
# fio with Debian's binary and its libraries, from the read-only tools disk
# /dev/vdb (fio-tools.img, see ci/build-guest), in a chroot there. Field
# numbers are those of fio's terse format v3: 7/8 read KiB/s and IOPS, 48/49
# write KiB/s and IOPS.
fio_test() {
    disk_wait || return 1
    T=/opt/tools
    mkdir -p $T
    mount -t ext4 -o ro /dev/vdb $T 2>/dev/null || { disk_fail "no tools disk (/dev/vdb = fio-tools.img)"; return 1; }
    mount -t devtmpfs devtmpfs $T/dev && mount -t proc proc $T/proc && mount -t sysfs sysfs $T/sys &&
        mount -t tmpfs tmpfs $T/tmp || { disk_fail "mounts in the tools chroot"; return 1; }
    secs=$(param grappe.fiosecs)
    # Write the region once, unmeasured: a new volume's stores are sparse,
    # and reading holes costs no I/O (docs/volume.md, "Measured"), so every
    # configuration reads allocated blocks, as a disk in use has.
    chroot $T /usr/bin/fio --name=fill --filename=/dev/vda --direct=1 --ioengine=libaio \
        --iodepth=16 --rw=write --bs=1M --size=256M >/dev/null 2>&1 \
        || { disk_fail "fio fill"; return 1; }
    for job in seqread:read:1M seqwrite:write:1M randread:randread:4k randwrite:randwrite:4k; do
        name=${job%%:*}; rest=${job#*:}; rw=${rest%%:*}; bs=${rest#*:}
        # CPU 0 is on the I/O node (the disk's home): measure the disk path,
        # not the forwarding of another node's kicks and interrupts.
        out=$(chroot $T /usr/bin/fio --name="$name" --filename=/dev/vda --direct=1 --ioengine=libaio \
            --cpus_allowed=0 \
            --iodepth=16 --rw="$rw" --bs="$bs" --size=256M --time_based \
            --runtime="${secs:-10}" --ramp_time=1 --output-format=terse --terse-version=3 2>&1) \
            || { echo "$out"; disk_fail "fio $name"; return 1; }
        case $rw in
            *read) echo "$out" | awk -F';' -v n="$name" '{ print "GRAPPE-GUEST: fio " n " kib_s=" $7 " iops=" $8 }' ;;
            *) echo "$out" | awk -F';' -v n="$name" '{ print "GRAPPE-GUEST: fio " n " kib_s=" $48 " iops=" $49 }' ;;
        esac
    done
    echo "GRAPPE-GUEST: fio PASS"
}
# make demo (examples/cluster.xml): the machine, then its disk in use.
demo() {
    # every CPU, also those isolcpus keeps init off (docs/cluster.md)
    taskset -c "$all_cpus" smpcheck --info
    disk_wait || return 1
    mkdir -p /mnt
    if ! mount -t ext4 /dev/vda /mnt 2>/dev/null; then
        echo "GRAPPE-GUEST: demo: first boot, making ext4 on /dev/vda"
        mkfs.ext4 -q -F /dev/vda || { disk_fail "mkfs.ext4"; return 1; }
        mount -t ext4 /dev/vda /mnt || { disk_fail "mount"; return 1; }
    fi
    n=$(( $(cat /mnt/boots 2>/dev/null || echo 0) + 1 ))
    echo $n >/mnt/boots
    dd if=/dev/urandom of=/mnt/demo.bin bs=64k count=64 2>/dev/null
    sum=$(sha256sum /mnt/demo.bin | cut -c1-16)
    sync
    echo 3 >/proc/sys/vm/drop_caches
    [ "$(sha256sum /mnt/demo.bin | cut -c1-16)" = "$sum" ] || { disk_fail "read-back differs"; return 1; }
    echo "GRAPPE-GUEST: demo: /dev/vda ($(($(cat /sys/block/vda/size) / 2048)) MiB) mounted on /mnt, boot $n of this volume"
    df -h /mnt | sed 's/^/GRAPPE-GUEST:   /'
    echo "GRAPPE-GUEST: demo: wrote and read back 4 MiB (sha256 $sum...)"
    umount /mnt
    echo "GRAPPE-GUEST: demo PASS"
}
# ---- end of [disks] ----

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

# smpcheck runs on every online CPU, whatever the default affinity: a
# cluster guest may keep ordinary tasks off other nodes' CPUs (isolcpus=,
# docs/cluster.md), and these checks are about every CPU.
all_cpus=$(cat /sys/devices/system/cpu/online)

case "$test" in
    info)
        taskset -c "$all_cpus" smpcheck --info
        ;;
    smp)
        args=$(param grappe.smpargs | tr ',' ' ')
        # smpcheck streams its own per-check lines; its FAIL line says why,
        # which the summary repeats.
        # shellcheck disable=SC2086  # $args is a list of words
        { taskset -c "$all_cpus" smpcheck $args 2>&1; echo $? >/tmp/smp.rc; } | tee /tmp/smp.log
        rc=$(cat /tmp/smp.rc)
        if [ "$rc" = 0 ]; then
            echo "GRAPPE-GUEST: smp PASS"
        else
            why=$(grep 'smpcheck FAIL' /tmp/smp.log | tail -n 1 | sed 's/.*smpcheck FAIL //')
            echo "GRAPPE-GUEST: smp FAIL rc=$rc ${why:-no reason printed}"
        fi
        ;;
    memtouch)
        mib=$(param grappe.memmib)
        passes=$(param grappe.mempasses)
        secs=$(param grappe.memtimeout)
        # memtouch prints its own PASS/FAIL line; a crash shows as rc
        memtouch --mib="${mib:-64}" --passes="${passes:-2}" --timeout="${secs:-600}" ||
            echo "GRAPPE-GUEST: memtouch FAIL rc=$?"
        ;;
    panic)
        echo "GRAPPE-GUEST: panic now"
        echo 1 >/proc/sys/kernel/sysrq
        echo c >/proc/sysrq-trigger
        echo "GRAPPE-GUEST: panic FAIL still alive"
        ;;
    disk) disk_test ;;          # [disks]
    disk-verify) disk_verify ;; # [disks]
    disk-ro) disk_ro ;;         # [disks]
    fio) fio_test ;;            # [disks]
    demo) demo ;;
    shell)
        echo "GRAPPE-GUEST: shell (exit to power off)"
        setsid cttyhack sh -l
        ;;
    *)
        echo "GRAPPE-GUEST: $test FAIL unknown test"
        ;;
esac
finish
