#!/bin/busybox sh
# /init of the Secure Boot proof's initramfs (tests/secureboot/ovmf-secureboot.sh): reports on the serial
# console, one "SBPROOF" line per fact, what the booted kernel enforces, then powers off.
# shellcheck shell=sh
/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
# efivarfs is a module on Debian: loading it is the first check that signed modules load.
if [ -f /kmod/efivarfs.ko ]; then
    if out=$(insmod /kmod/efivarfs.ko 2>&1); then
        echo "SBPROOF insmod efivarfs: loaded"
    else
        echo "SBPROOF insmod efivarfs: refused: $out"
    fi
fi
mount -t efivarfs efivarfs /sys/firmware/efi/efivars

# An EFI variable file starts with 4 bytes of attributes; SecureBoot's value is the one byte after them.
sb=$(tail -c1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c | od -An -tu1 | tr -d ' ')
echo "SBPROOF secureboot-variable: $sb"
echo "SBPROOF lockdown: $(cat /sys/kernel/security/lockdown)"
echo "SBPROOF sig_enforce: $(cat /sys/module/module/parameters/sig_enforce)"

# The MOK variables shim handed to the kernel (its config table): MokListTrustedRT tells the kernel to put
# MOKs in .machine.
names=""
for v in /sys/firmware/efi/mok-variables/*; do names="$names ${v##*/}"; done
echo "SBPROOF mok-variables:$names"
for ring in .builtin_trusted_keys .secondary_trusted_keys .machine .platform; do
    keyctl list "%:$ring" 2>&1 | sed "s/^/SBPROOF keyring $ring: /"
done

for what in signed unsigned stranger; do
    if out=$(insmod "/kmod/$what.ko" 2>&1); then
        echo "SBPROOF insmod $what: loaded, initstate $(cat /sys/module/kmod_hello/initstate)"
        rmmod kmod_hello
    else
        echo "SBPROOF insmod $what: refused: $out"
    fi
done

echo "SBPROOF-END"
poweroff -f
