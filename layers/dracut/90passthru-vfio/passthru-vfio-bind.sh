#!/bin/sh
# Sourced by dracut before udev starts (the pre-udev hook of passthru-image's 90passthru-vfio module).
# Binds every PCI function listed in rd.passthru.vfio_addresses= (comma-separated; the last occurrence counts,
# as for any parameter read once) to vfio-pci by address:
#  1. driver_override = vfio-pci for all of them first: from then on no other driver can claim one, whichever of
#     two identical devices udev would probe first. (A udev rule per device is too late: the first twin's event
#     loads the shared driver, which takes the second twin before its own rule runs.)
#  2. vfio-pci loaded when it is not there yet: a systemd initramfs loads the rd.driver.pre modules only after
#     the pre-udev hooks. It claims the overridden functions as it registers.
#  3. each function probed again (drivers_probe), after unbinding a driver built into the kernel that took it
#     before the initramfs ran.
# Runs in a subshell: dracut sources its hooks, and nothing here may change dracut's own shell.

passthru_vfio_bind() (
    set -f
    read -r cmdline < /proc/cmdline || [ -n "$cmdline" ] || return 0
    list=
    for word in $cmdline; do
        case $word in
            rd.passthru.vfio[_-]addresses=*) list=${word#*=} ;;
        esac
    done
    [ -n "$list" ] || return 0

    IFS=,
    # shellcheck disable=SC2086 # split on commas, globbing off
    set -- $list
    unset IFS
    found=
    for address; do
        case $address in
            *[!0-9a-f:.]* | "")
                warn "passthru-vfio: rd.passthru.vfio_addresses: '$address' is not a PCI address (0000:02:00.0); skipped"
                continue
                ;;
        esac
        dev=/sys/bus/pci/devices/$address
        if [ ! -e "$dev/driver_override" ]; then
            warn "passthru-vfio: no PCI device $address; skipped"
            continue
        fi
        echo vfio-pci > "$dev/driver_override"
        found="$found $address"
    done
    [ -n "$found" ] || return 0

    [ -d /sys/bus/pci/drivers/vfio-pci ] || modprobe -b vfio-pci
    for address in $found; do
        dev=/sys/bus/pci/devices/$address
        driver=
        [ -L "$dev/driver" ] && driver=$(readlink "$dev/driver") && driver=${driver##*/}
        if [ -n "$driver" ] && [ "$driver" != vfio-pci ]; then
            echo "$address" > "$dev/driver/unbind"
        fi
        [ "$driver" = vfio-pci ] || echo "$address" > /sys/bus/pci/drivers_probe
        driver=
        [ -L "$dev/driver" ] && driver=$(readlink "$dev/driver") && driver=${driver##*/}
        if [ "$driver" = vfio-pci ]; then
            info "passthru-vfio: $address bound to vfio-pci by address"
        else
            warn "passthru-vfio: $address is not on vfio-pci (driver: ${driver:-none})"
        fi
    done
)

passthru_vfio_bind
