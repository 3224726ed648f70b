#!/bin/bash
# passthru-image's dracut module: puts the hook that binds the PCI functions named by
# rd.passthru.vfio_addresses= to vfio-pci into the initramfs. Host-agnostic: the addresses are kernel
# arguments (kargs.d), so an address change never rebuilds the initramfs.

# Only when asked for: passthru-image's dracut.conf.d drop-in adds it with add_dracutmodules.
check() {
    return 255
}

# modprobe comes with kernel-modules; the hook loads vfio-pci when the initramfs has not yet.
depends() {
    echo kernel-modules
    return 0
}

install() {
    inst_multiple readlink
    # shellcheck disable=SC2154 # moddir is set by dracut for each module it installs.
    inst_hook pre-udev 30 "$moddir/passthru-vfio-bind.sh"
}
