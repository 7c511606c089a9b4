/**
 * What the QEMU guest of the passt test does, as shell scripts for its
 * initramfs (busybox sh): load virtio-net, bring eth0 up, get an address with
 * udhcpc, download a file over HTTP, print its SHA-256 after a marker on the
 * serial console, power off; or (guestServeInit) stay up and serve that file
 * over HTTP on port 80.
 *
 *   buildInitramfs(img, kernel, guestInit(url), { "/udhcpc.sh": UDHCPC_SCRIPT });
 *   // serial console: "PASST-QEMU-OK <sha256>  /tmp/file", or "PASST-QEMU-FAIL <why>"
 */
import { MODULE_LIST } from "./initramfs.ts";

/**
 * QEMU's accelerator for test guests: TCG always. On some machines of this
 * kind /dev/kvm opens but a KVM guest hangs with no output at all, so no
 * cheap probe can tell; TCG boots this small guest in some tens of seconds.
 */
export const QEMU_ACCEL = ["-accel", "tcg"];

/**
 * The argv every test guest starts with: QEMU under QEMU_ACCEL, 256 MiB,
 * one CPU, the kernel and initramfs given, its serial console on stdio and
 * nothing else on screen, no reboot. Callers add memory and network
 * options (extra), which go between the machine's size and its kernel.
 */
export function qemuGuestArgv(kernel: string, initrd: string, extra: string[] = []): string[] {
  return [
    "qemu-system-x86_64",
    ...QEMU_ACCEL,
    "-m",
    "256",
    "-smp",
    "1",
    ...extra,
    "-kernel",
    kernel,
    "-initrd",
    initrd,
    "-append",
    "console=ttyS0 panic=-1 quiet",
    "-display",
    "none",
    "-vga",
    "none",
    "-monitor",
    "none",
    "-serial",
    "stdio",
    "-no-reboot",
  ];
}

export const MARK_OK = "PASST-QEMU-OK";
export const MARK_FAIL = "PASST-QEMU-FAIL";

/** udhcpc's script: configure address, MTU and default route; say what it got. */
export const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
bound|renew)
	ifconfig "$interface" "$ip" netmask "$subnet" up
	[ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
	for r in $router; do ip route add default via "$r" dev "$interface"; break; done
	echo "guest: bound $ip/$subnet via $router mtu \${mtu:-default} dns $dns"
	;;
esac
exit 0
`;

/** The start of every /init: busybox, mounts, virtio-net, eth0 up; fail() prints the failure marker. */
function initPrelude(): string {
  return `#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "guest: init"
fail() { echo "${MARK_FAIL} $*"; poweroff -f; }
while read m; do insmod "/lib/modules/$m" || fail "insmod $m"; done < ${MODULE_LIST}
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -e /sys/class/net/eth0 ] || fail "no eth0"
ip link set lo up
ip link set eth0 up
`;
}

/** /init: everything the guest does, ending with the marker line and a power-off. */
export function guestInit(url: string): string {
  return `${initPrelude()}udhcpc -i eth0 -s /udhcpc.sh -O mtu -n -q -t 10 -T 2 || fail "udhcpc"
ip addr show dev eth0
ip route
wget -q -O /tmp/file "${url}" || fail "wget ${url}"
echo "${MARK_OK} $(sha256sum /tmp/file)"
poweroff -f
`;
}

/** Printed by guestServeInit() once its HTTP server runs. */
export const MARK_SERVING = "PASST-QEMU-SERVING";

/**
 * /init of a guest that stays up: udhcpc as it comes (no options asked: what
 * passt sends unasked, the MTU included, is what the guest gets), the link's
 * MTU, a download whose SHA-256 follows MARK_OK, then busybox httpd on port
 * 80 serving that same file as /file, and MARK_SERVING; it runs until QEMU is
 * ended.
 */
export function guestServeInit(url: string): string {
  return `${initPrelude()}udhcpc -i eth0 -s /udhcpc.sh -n -q -t 10 -T 2 || fail "udhcpc"
echo "guest: link $(ip -o link show dev eth0)"
wget -q -O /tmp/file "${url}" || fail "wget ${url}"
echo "${MARK_OK} $(sha256sum /tmp/file)"
mkdir -p /www && cp /tmp/file /www/file || fail "copy"
httpd -p 80 -h /www || fail "httpd"
echo "${MARK_SERVING}"
while :; do sleep 3600; done
`;
}

/**
 * /init of a guest that configures nothing itself: its kernel takes the
 * IPv6 prefix of passt's router advertisements (SLAAC); once eth0 has a
 * global address ("guest: slaac ADDRESS"), a download over IPv6 whose
 * SHA-256 follows MARK_OK; then a power-off.
 */
export function guestSlaacInit(url: string): string {
  return `${initPrelude()}i=0
while ! ip -6 -o addr show dev eth0 scope global | grep -q inet6 && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
ip -6 -o addr show dev eth0 scope global | grep -q inet6 || fail "no global IPv6 address"
echo "guest: slaac $(ip -6 -o addr show dev eth0 scope global)"
wget -q -O /tmp/file "${url}" || fail "wget ${url}"
echo "${MARK_OK} $(sha256sum /tmp/file)"
poweroff -f
`;
}

/** Printed by guestResetInit() before the second download's SHA-256. */
export const MARK_AGAIN = "PASST-QEMU-AGAIN";

/**
 * /init of a guest that resets its network device as a reboot does: DHCP
 * and a download (SHA-256 after MARK_OK), then virtio-net unbound from the
 * device and bound again (the device is reset: the back-end sees its rings
 * stopped and set up again), DHCP and the download once more (SHA-256 after
 * MARK_AGAIN); then a power-off.
 */
export function guestResetInit(url: string): string {
  return `${initPrelude()}udhcpc -i eth0 -s /udhcpc.sh -n -q -t 10 -T 2 || fail "udhcpc"
wget -q -O /tmp/file "${url}" || fail "wget ${url}"
echo "${MARK_OK} $(sha256sum /tmp/file)"
dev=$(basename "$(readlink -f /sys/class/net/eth0/device)")
echo "$dev" > /sys/bus/virtio/drivers/virtio_net/unbind || fail "unbind $dev"
echo "guest: $dev unbound"
echo "$dev" > /sys/bus/virtio/drivers/virtio_net/bind || fail "bind $dev"
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set eth0 up || fail "no eth0 after the reset"
udhcpc -i eth0 -s /udhcpc.sh -n -q -t 10 -T 2 || fail "udhcpc after the reset"
rm -f /tmp/file
wget -q -O /tmp/file "${url}" || fail "wget ${url} after the reset"
echo "${MARK_AGAIN} $(sha256sum /tmp/file)"
poweroff -f
`;
}
