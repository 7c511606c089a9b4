/**
 * What the QEMU guest of the passt test does, as shell scripts for its
 * initramfs (busybox sh): load virtio-net, bring eth0 up, get an address with
 * udhcpc, download a file over HTTP, print its SHA-256 after a marker on the
 * serial console, power off.
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

/** /init: everything the guest does, ending with the marker line and a power-off. */
export function guestInit(url: string): string {
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
udhcpc -i eth0 -s /udhcpc.sh -O mtu -n -q -t 10 -T 2 || fail "udhcpc"
ip addr show dev eth0
ip route
wget -q -O /tmp/file "${url}" || fail "wget ${url}"
echo "${MARK_OK} $(sha256sum /tmp/file)"
poweroff -f
`;
}
