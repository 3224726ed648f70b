#!/usr/bin/env bash
# The Secure Boot proof, end to end under OVMF with Secure Boot on, offline:
#
#   OVMF (Microsoft keys enrolled, Secure Boot on)
#     -> Debian's shim, signed by Microsoft (shimx64.efi.signed as \EFI\BOOT\BOOTX64.EFI)
#     -> Debian's GRUB, signed by Debian (grubx64.efi.signed), which asks shim to verify the kernel
#     -> the test base's kernel, its Debian signature removed and signed with a key from `passthru-image mok
#        new`, whose certificate is pre-enrolled as a Machine Owner Key (virt-fw-vars --add-mok)
#     -> an initramfs whose init checks what the kernel enforces.
#
# It shows (a) Secure Boot is on in the guest (the SecureBoot EFI variable, the kernel's lockdown line and
# /sys/kernel/security/lockdown), (b) the test module signed with the MOK by the kernel's own sign-file
# loads, while the same module unsigned, or signed with a key that is not enrolled, is refused with the
# kernel's rejection line, and (c) the same kernel without a signature does not boot (shim refuses it).
# It also shows why `mok new` gives the certificate no module-signing-only usage: (d) the kernel signed with a
# key like the MOK's but whose extended key usage adds 1.3.6.1.4.1.2312.16.1.2, enrolled the same way, does
# not boot either. A fourth boot reports facts about the kernel's keyrings rather than checking ours: with
# shim told not to trust MokList for the kernel (MokListTrusted set) and the second key enrolled in db, which
# keyring each key lands in and whether modules signed with them load.
# Module signatures are also checked independently of the kernel: the PKCS#7 signature appended to the
# module is cut out and verified with `openssl cms` against the certificate.
#
# Not part of the suite (.ci/run): it needs the Secure Boot firmware and Microsoft-signed shim (Debian's
# ovmf, shim-signed, grub-efi-amd64-signed), sbsigntool, mtools, dosfstools, busybox-static, keyutils and
# PyPI's virt-firmware, and takes about 90 s under TCG with the test base cached. Run as root (buildah):
#
#   bash tests/secureboot/ovmf-secureboot.sh            # work files in a new /var/tmp/sbproof.* dir
#   SBPROOF_WORK=DIR bash tests/secureboot/ovmf-secureboot.sh    # ... in DIR, kept
#
# Every check prints PASS or FAIL; the script exits 1 at the first failure, leaving the work dir (console
# logs, keys, images) for a look; after a pass it removes a work dir it made. The last lines give the time
# each stage took.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd
OVMF_VARS_MS=/usr/share/OVMF/OVMF_VARS_4M.ms.fd
SHIM=/usr/lib/shim/shimx64.efi.signed
MOKMANAGER=/usr/lib/shim/mmx64.efi.signed
GRUB=/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed
# shim's vendor GUID: owner of the MOK entries it keeps.
SHIM_LOCK_GUID=605dab50-e046-4300-abb6-3dd810dd8b23
BOOT_TIMEOUT=${SBPROOF_BOOT_TIMEOUT:-600}

t_start=$SECONDS
timings=()
stage_start=$SECONDS
log() { echo "sbproof: $*" >&2; }
pass() { echo "PASS $*"; }
fail() {
    echo "FAIL $*"
    echo "sbproof: work files kept in $work" >&2
    exit 1
}
stage_done() {
    timings+=("$(printf '%-28s %4ds' "$1" $((SECONDS - stage_start)))")
    stage_start=$SECONDS
}

need_file() {
    [[ -f $1 ]] || {
        log "missing $1: apt-get install $2"
        exit 1
    }
}
need_program() {
    command -v "$1" >/dev/null || {
        log "missing $1: $2"
        exit 1
    }
}

check_prerequisites() {
    [[ $(id -u) -eq 0 ]] || {
        log "run as root (podman image mount, buildah)"
        exit 1
    }
    need_file "$OVMF_CODE" ovmf
    need_file "$OVMF_VARS_MS" ovmf
    need_file "$SHIM" shim-signed
    need_file "$MOKMANAGER" shim-signed
    need_file "$GRUB" grub-efi-amd64-signed
    need_program qemu-system-x86_64 "apt-get install qemu-system-x86"
    need_program sbsign "apt-get install sbsigntool"
    need_program sbattach "apt-get install sbsigntool"
    need_program sbverify "apt-get install sbsigntool"
    need_program mcopy "apt-get install mtools"
    need_program mkfs.vfat "apt-get install dosfstools"
    need_program busybox "apt-get install busybox-static"
    need_program keyctl "apt-get install keyutils"
    need_program cpio "apt-get install cpio"
    need_program openssl "apt-get install openssl"
    need_program buildah "apt-get install buildah"
    need_program podman "apt-get install podman"
    need_program virt-fw-vars "pip install virt-firmware"
    need_program cargo "a Rust toolchain (rustup)"
    # busybox must run inside the guest without a libc of its own.
    if ldd "$(command -v busybox)" >/dev/null 2>&1; then
        log "$(command -v busybox) is dynamically linked: apt-get install busybox-static"
        exit 1
    fi
}

work=${SBPROOF_WORK:-$(mktemp -d /var/tmp/sbproof.XXXXXX)}
keep_work=${SBPROOF_WORK:+yes}
mkdir -p "$work"
ctr=""
cleanup() {
    if [[ -n $ctr ]]; then
        buildah rm "$ctr" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

# --- keys ----------------------------------------------------------------------------------------------------

make_keys() {
    cargo build --quiet --manifest-path "$repo/Cargo.toml"
    local bin=$repo/target/debug/passthru-image
    rm -rf "$work/mok" "$work/stranger"
    "$bin" -q mok new "$work/mok" --name "sbproof test MOK"
    "$bin" -q mok new "$work/stranger" --name "sbproof stranger key"
    openssl x509 -in "$work/mok/MOK.pem" -noout -text >"$work/mok.txt"
    grep -q "Code Signing" "$work/mok.txt" || fail "the MOK has no codeSigning usage"
    pass "mok new made the test MOK and a second key that is never enrolled"
}

# A key made like mok new's (the same extensions as src/mok.rs) except that its extended key usage also names
# the module-signing-only OID, as some guides make keys for modules; shim must refuse to boot a kernel signed
# with it (its verify_eku).
make_modsign_key() {
    local dir=$work/modsign
    rm -rf "$dir"
    mkdir -m 0700 "$dir"
    cat >"$dir/req.cnf" <<'EOF'
[ req ]
distinguished_name = mok_subject
x509_extensions = mok_extensions
prompt = no
string_mask = utf8only

[ mok_subject ]

[ mok_extensions ]
basicConstraints = critical, CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = codeSigning, 1.3.6.1.4.1.2312.16.1.2
subjectKeyIdentifier = hash
EOF
    openssl req -new -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -config "$dir/req.cnf" \
        -subj "/CN=sbproof module-signing-only key" -keyout "$dir/MOK.key" -out "$dir/MOK.pem" 2>"$dir/req.err" ||
        fail "openssl req: $(cat "$dir/req.err")"
    openssl x509 -in "$dir/MOK.pem" -outform DER -out "$dir/MOK.der"
    sbsign --key "$dir/MOK.key" --cert "$dir/MOK.pem" --output "$work/vmlinuz.modsign" "$work/vmlinuz.unsigned" \
        2>"$dir/sbsign.err" || fail "sbsign: $(cat "$dir/sbsign.err")"
    virt-fw-vars --input "$OVMF_VARS_MS" --output "$work/vars-modsign.fd" \
        --add-mok "$SHIM_LOCK_GUID" "$dir/MOK.der" >>"$work/vars.log" 2>&1 ||
        fail "virt-fw-vars: $(tail -n3 "$work/vars.log")"
}

# --- the test base's kernel and the module, built and signed against its own headers ----------------------

build_module() {
    local image
    image=$(bash "$repo/tests/base/make-base.sh" | tail -n1)
    ctr=$(buildah from --pull=never --name "sbproof-$$" "$image")
    buildah copy "$ctr" "$repo/tests/fixtures/kmod-hello" /sbproof/src >/dev/null
    buildah copy "$ctr" "$work/mok" /sbproof/mok >/dev/null
    buildah copy "$ctr" "$work/stranger" /sbproof/stranger >/dev/null
    kver=$(buildah run "$ctr" ls /usr/lib/modules)
    log "test base $image, kernel $kver"
    buildah run "$ctr" make -s -C /sbproof/src KVER="$kver" >/dev/null
    # The kernel's own sign-file, from the headers the module was built against (on Fedora kernel-devel
    # has it at the same place: /usr/lib/modules/$kver/build/scripts/sign-file).
    local sign_file=/usr/lib/modules/$kver/build/scripts/sign-file
    buildah run "$ctr" sh -c "set -e; cd /sbproof/src
        cp kmod_hello.ko unsigned.ko
        cp kmod_hello.ko signed.ko
        cp kmod_hello.ko stranger.ko
        $sign_file sha256 /sbproof/mok/MOK.key /sbproof/mok/MOK.pem signed.ko
        $sign_file sha256 /sbproof/stranger/MOK.key /sbproof/stranger/MOK.pem stranger.ko"
    signer=$(buildah run "$ctr" modinfo -F signer /sbproof/src/signed.ko)
    unsigned_signer=$(buildah run "$ctr" modinfo -F signer /sbproof/src/unsigned.ko)
    local mnt
    mnt=$(buildah mount "$ctr")
    mkdir -p "$work/modules"
    cp "$mnt/sbproof/src/"{signed,unsigned,stranger}.ko "$work/modules/"
    cp "$mnt/usr/lib/modules/$kver/vmlinuz" "$work/vmlinuz.debian"
    # efivarfs is a module on Debian, signed by the kernel's build key: the guest needs it to read SecureBoot.
    rm -f "$work/efivarfs.ko"
    local efivarfs=$mnt/usr/lib/modules/$kver/kernel/fs/efivarfs/efivarfs.ko
    [[ ! -f $efivarfs ]] || cp "$efivarfs" "$work/efivarfs.ko"
    buildah umount "$ctr" >/dev/null
    buildah rm "$ctr" >/dev/null
    ctr=""
    [[ $signer == "sbproof test MOK" ]] || fail "modinfo -F signer said '$signer', not the MOK's name"
    [[ -z $unsigned_signer ]] || fail "the unsigned module has a signer: $unsigned_signer"
    pass "modinfo -F signer of the signed module: '$signer'; of the unsigned one: nothing"
}

# The module ends with: PKCS#7 (DER) | struct module_signature (12 bytes, sig_len big-endian in the last 4) |
# "~Module signature appended~\n" (28 bytes). The signature covers every byte before it.
split_module_signature() {
    local ko=$1 out=$2 size sig_len
    size=$(stat -c %s "$ko")
    tail -c 28 "$ko" | cmp -s - <(printf '~Module signature appended~\n') || return 1
    sig_len=$(tail -c 40 "$ko" | head -c 12 | tail -c 4 | od -An -tu4 --endian=big | tr -d ' ')
    head -c $((size - 40 - sig_len)) "$ko" >"$out.content"
    tail -c $((40 + sig_len)) "$ko" | head -c "$sig_len" >"$out.p7"
}

verify_module_signatures() {
    split_module_signature "$work/modules/signed.ko" "$work/signed" ||
        fail "signed.ko does not end with the module signature magic"
    openssl cms -verify -binary -inform DER -in "$work/signed.p7" -content "$work/signed.content" \
        -certfile "$work/mok/MOK.pem" -CAfile "$work/mok/MOK.pem" -purpose any -out /dev/null 2>"$work/cms.err" ||
        fail "openssl cms does not verify signed.ko against the MOK: $(cat "$work/cms.err")"
    if openssl cms -verify -binary -inform DER -in "$work/signed.p7" -content "$work/signed.content" \
        -certfile "$work/stranger/MOK.pem" -CAfile "$work/stranger/MOK.pem" -purpose any -out /dev/null 2>/dev/null; then
        fail "openssl cms verifies signed.ko against the wrong certificate"
    fi
    cmp -s "$work/signed.content" "$work/modules/unsigned.ko" ||
        fail "the signed bytes of signed.ko are not the unsigned module"
    if split_module_signature "$work/modules/unsigned.ko" "$work/unsigned"; then
        fail "unsigned.ko carries a signature"
    fi
    pass "signed.ko: its appended PKCS#7 verifies with openssl cms against the MOK (and not against the other key), over exactly the unsigned module's bytes"
}

# --- the kernel: Debian's signature off, the MOK's on -------------------------------------------------------

sign_kernel() {
    cp "$work/vmlinuz.debian" "$work/vmlinuz.unsigned"
    sbattach --remove "$work/vmlinuz.unsigned"
    sbsign --key "$work/mok/MOK.key" --cert "$work/mok/MOK.pem" \
        --output "$work/vmlinuz.signed" "$work/vmlinuz.unsigned" 2>"$work/sbsign.err" ||
        fail "sbsign: $(cat "$work/sbsign.err")"
    sbverify --cert "$work/mok/MOK.pem" "$work/vmlinuz.signed" >/dev/null 2>&1 ||
        fail "sbverify --cert MOK.pem rejects the signed kernel"
    if sbverify --cert "$work/mok/MOK.pem" "$work/vmlinuz.unsigned" >/dev/null 2>&1; then
        fail "sbverify accepts the unsigned kernel"
    fi
    if sbverify --list "$work/vmlinuz.unsigned" 2>/dev/null | grep -q "signature 1"; then
        fail "sbattach --remove left a signature on the kernel"
    fi
    pass "kernel: Debian's signature removed; sbsign with the MOK; sbverify --cert accepts the signed image and not the unsigned one"
}

# --- the initramfs: busybox, keyctl, the three modules, and an init that reports and powers off -------------

make_initramfs() {
    local root=$work/initramfs
    rm -rf "$root"
    mkdir -p "$root"/{bin,dev,proc,sys,tmp,kmod,lib64,lib/x86_64-linux-gnu}
    cp "$(command -v busybox)" "$root/bin/busybox"
    cp "$(command -v keyctl)" "$root/bin/keyctl"
    local lib
    for lib in $(ldd "$(command -v keyctl)" | grep -o '/[^ ]*'); do
        cp -L "$lib" "$root$lib"
    done
    cp "$work/modules/"*.ko "$root/kmod/"
    [[ ! -f $work/efivarfs.ko ]] || cp "$work/efivarfs.ko" "$root/kmod/"
    cp "$here/guest-init.sh" "$root/init"
    chmod 0755 "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initramfs.img"
}

# --- the EFI system partition and the firmware variables ----------------------------------------------------

make_esp() {
    local kernel=$1 esp=$2 cfg=$work/grub.cfg
    cat >"$cfg" <<'EOF'
set timeout=0
echo "SBPROOF grub: loading the kernel"
linux /vmlinuz console=ttyS0,115200 panic=-1 loglevel=7
echo "SBPROOF grub: loading the initramfs"
initrd /initramfs.img
echo "SBPROOF grub: booting"
boot
echo "SBPROOF grub: the kernel did not start"
EOF
    rm -f "$esp"
    mkfs.vfat -C -n SBPROOF "$esp" $((96 * 1024)) >/dev/null
    mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/debian
    mcopy -i "$esp" "$SHIM" ::/EFI/BOOT/BOOTX64.EFI
    mcopy -i "$esp" "$MOKMANAGER" ::/EFI/BOOT/mmx64.efi
    mcopy -i "$esp" "$GRUB" ::/EFI/BOOT/grubx64.efi
    # Debian's signed GRUB reads $prefix/grub.cfg (prefix /EFI/debian) and falls back to its own directory.
    mcopy -i "$esp" "$cfg" ::/EFI/debian/grub.cfg
    mcopy -i "$esp" "$cfg" ::/EFI/BOOT/grub.cfg
    mcopy -i "$esp" "$kernel" ::/vmlinuz
    mcopy -i "$esp" "$work/initramfs.img" ::/initramfs.img
}

make_vars() {
    virt-fw-vars --input "$OVMF_VARS_MS" --output "$work/vars.fd" \
        --add-mok "$SHIM_LOCK_GUID" "$work/mok/MOK.der" >"$work/vars.log" 2>&1 ||
        fail "virt-fw-vars: $(tail -n3 "$work/vars.log")"
    virt-fw-vars --input "$work/vars.fd" --print >"$work/vars.txt" 2>&1
    grep -q "SecureBootEnable *: bool: ON" "$work/vars.txt" || fail "the variable store has Secure Boot off"
    grep -q "^MokList " "$work/vars.txt" || fail "the variable store has no MokList"
    pass "OVMF variables: Microsoft keys, Secure Boot on, the MOK pre-enrolled in MokList"
    # For the facts boot: shim >= 15.6 publishes MokListTrustedRT (which tells the kernel to put MOKs in
    # .machine) unless the NV variable MokListTrusted exists, as `mokutil --untrust-mok` leaves it; and the
    # other key, never a MOK, goes into db, whose keys the kernel puts in .platform.
    printf '{"version": 2, "variables": [{"name": "MokListTrusted", "guid": "%s", "attr": 3, "data": "01"}]}\n' \
        "$SHIM_LOCK_GUID" >"$work/untrust.json"
    virt-fw-vars --input "$work/vars.fd" --output "$work/vars-facts.fd" \
        --set-json "$work/untrust.json" --add-db "$SHIM_LOCK_GUID" "$work/stranger/MOK.der" >>"$work/vars.log" 2>&1 ||
        fail "virt-fw-vars --set-json --add-db: $(tail -n3 "$work/vars.log")"
}

# --- booting --------------------------------------------------------------------------------------------------

# boot NAME ESP VARS: boots the ESP with a copy of the variable store VARS; the serial console goes to
# NAME.log. Ends when QEMU does (the init powers off), when the console shows a line that ends the story, or
# at the timeout.
boot() {
    local name=$1 esp=$2 console=$work/$1.log vars=$work/$1.vars.fd
    cp "$3" "$vars"
    : >"$console"
    local t0=$SECONDS
    qemu-system-x86_64 -machine q35,smm=on -accel tcg -m 1024 -smp 1 \
        -global driver=cfi.pflash01,property=secure,value=on \
        -drive if=pflash,format=raw,unit=0,file="$OVMF_CODE",readonly=on \
        -drive if=pflash,format=raw,unit=1,file="$vars" \
        -drive if=ide,format=raw,file="$esp" \
        -display none -serial file:"$console" -monitor none -no-reboot -net none 2>"$work/$name.qemu.err" &
    local qemu=$!
    while kill -0 "$qemu" 2>/dev/null; do
        if ((SECONDS - t0 > BOOT_TIMEOUT)) ||
            grep -qE "SBPROOF-END|SBPROOF grub: the kernel did not start|Kernel panic" "$console"; then
            sleep 2
            kill "$qemu" 2>/dev/null || true
            break
        fi
        sleep 2
    done
    wait "$qemu" 2>/dev/null || true
    tr -d '\r' <"$console" >"$console.txt"
    log "$name: $((SECONDS - t0)) s in the VM"
}

console_has() { grep -qE "$2" "$work/$1.log.txt"; }
console_line() { grep -m1 -E "$2" "$work/$1.log.txt" || true; }
strip_time() { echo "${1#\[*\] }"; }

check_signed_boot() {
    local c=signed
    console_has $c "SBPROOF-END" || fail "the MOK-signed kernel did not reach the end of init (see $work/$c.log.txt)"
    pass "shim and GRUB booted the MOK-signed kernel: $(console_line $c 'Linux version' | cut -c1-80)"
    console_has $c "SBPROOF secureboot-variable: 1$" ||
        fail "SecureBoot EFI variable is not 1: $(console_line $c 'SBPROOF secureboot-variable')"
    pass "(a) SecureBoot EFI variable in the guest: 1"
    local lockdown_line
    lockdown_line=$(console_line $c "Kernel is locked down from EFI Secure Boot")
    [[ -n $lockdown_line ]] || fail "the kernel did not lock down for Secure Boot"
    console_has $c "SBPROOF lockdown: none \[integrity\] confidentiality" ||
        fail "lockdown is not integrity: $(console_line $c 'SBPROOF lockdown')"
    pass "(a) the kernel: '$(strip_time "$lockdown_line")'; /sys/kernel/security/lockdown: $(console_line $c 'SBPROOF lockdown' | sed 's/.*lockdown: //')"
    console_has $c "SBPROOF insmod signed: loaded" || fail "the MOK-signed module did not load: $(console_line $c 'SBPROOF insmod signed')"
    console_has $c "SBPROOF insmod signed: loaded, initstate live" || fail "the module is not live after insmod"
    console_has $c "kmod_hello: loaded" || fail "the module's init did not run"
    pass "(b) the module signed with the MOK loads: $(strip_time "$(console_line $c 'kmod_hello: loaded')")"
    local what
    for what in unsigned stranger; do
        console_has $c "SBPROOF insmod $what: refused" ||
            fail "the $what module was not refused: $(console_line $c "SBPROOF insmod $what")"
    done
    # Mainline under lockdown says "Lockdown: insmod: unsigned module loading is restricted"; a kernel that
    # also enforces module signatures (module.sig_enforce, as Debian's does under Secure Boot) says why.
    local unsigned_line stranger_line
    unsigned_line=$(console_line $c "Loading of unsigned module is rejected|Lockdown: insmod: unsigned module loading is restricted")
    stranger_line=$(console_line $c "Loading of module with unavailable key is rejected|Lockdown: insmod: unsigned module loading is restricted")
    [[ -n $unsigned_line && -n $stranger_line ]] || fail "no kernel message for the refused modules"
    pass "(b) the unsigned module is refused: insmod says '$(console_line $c 'SBPROOF insmod unsigned' | sed 's/.*: //')', the kernel '$(strip_time "$unsigned_line")'"
    pass "(b) the module signed with a key that is not enrolled is refused: insmod says '$(console_line $c 'SBPROOF insmod stranger' | sed 's/.*: //')', the kernel '$(strip_time "$stranger_line")'"
    if console_has $c "SBPROOF insmod efivarfs: loaded"; then
        pass "(b) efivarfs.ko, signed by the kernel's build key, loads too"
    fi
    report_keyrings $c
}

report_keyrings() {
    echo "keyrings in the guest ($1):"
    grep -E "SBPROOF (keyring|sig_enforce|mok-variables)" "$work/$1.log.txt" | sed 's/^SBPROOF /  /'
}

# Facts about this kernel (Debian 12's) to report, not pass/fail of ours: where a MOK lands when shim does not
# publish MokListTrustedRT, where a db key lands, and whether the kernel takes either for modules.
report_facts() {
    local c=facts
    console_has $c "SBPROOF-END" || fail "the facts boot did not finish (see $work/$c.log.txt)"
    report_keyrings $c
    echo "  module signed with the MOK: $(console_line $c 'SBPROOF insmod signed' | sed 's/SBPROOF insmod signed: //')"
    echo "  module signed with the db key: $(console_line $c 'SBPROOF insmod stranger' | sed 's/SBPROOF insmod stranger: //')"
}

check_unsigned_boot() {
    local c=unsigned
    console_has $c "Linux version" && fail "the unsigned kernel started (see $work/$c.log.txt)"
    local refusal
    refusal=$(grep -iE "bad shim signature|verification failed|Access Denied|Security Violation" "$work/$c.log.txt" | head -n1 || true)
    [[ -n $refusal ]] || fail "no refusal seen for the unsigned kernel (see $work/$c.log.txt)"
    pass "(c) the unsigned kernel does not boot: '$refusal'"
}

check_modsign_boot() {
    local c=modsign
    console_has $c "Linux version" && fail "the kernel signed with a module-signing-only key started (see $work/$c.log.txt)"
    local refusal
    refusal=$(grep -m1 -E "bad shim signature" "$work/$c.log.txt" || true)
    [[ -n $refusal ]] || fail "no refusal seen for the kernel signed with a module-signing-only key (see $work/$c.log.txt)"
    pass "(d) the kernel signed with an enrolled key whose usage names 1.3.6.1.4.1.2312.16.1.2 does not boot: '$refusal'"
}

main() {
    check_prerequisites
    log "work dir $work"
    make_keys
    stage_done "keys"
    build_module
    verify_module_signatures
    stage_done "module build and signing"
    sign_kernel
    make_initramfs
    make_esp "$work/vmlinuz.signed" "$work/esp-signed.img"
    make_esp "$work/vmlinuz.unsigned" "$work/esp-unsigned.img"
    make_vars
    make_modsign_key
    make_esp "$work/vmlinuz.modsign" "$work/esp-modsign.img"
    stage_done "kernel, initramfs, ESP, vars"
    boot signed "$work/esp-signed.img" "$work/vars.fd"
    check_signed_boot
    stage_done "boot: MOK-signed kernel"
    boot facts "$work/esp-signed.img" "$work/vars-facts.fd"
    report_facts
    stage_done "boot: keyring facts"
    boot unsigned "$work/esp-unsigned.img" "$work/vars.fd"
    check_unsigned_boot
    stage_done "boot: unsigned kernel"
    boot modsign "$work/esp-modsign.img" "$work/vars-modsign.fd"
    check_modsign_boot
    stage_done "boot: module-signing key"
    echo "timings:"
    printf '  %s\n' "${timings[@]}"
    echo "  total                        $((SECONDS - t_start))s"
    if [[ -z $keep_work ]]; then
        rm -rf "$work"
    fi
}

main "$@"
