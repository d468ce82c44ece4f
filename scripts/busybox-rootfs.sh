#!/usr/bin/env bash
# Builds a minimal busybox root filesystem tar from Debian's busybox-static, for
# `gantry image import OUT.tar --name busybox:1`.
set -euo pipefail
out=${1:?usage: busybox-rootfs.sh OUT.tar}
bb=$(command -v busybox || true)
if [ -z "$bb" ] || ! ldd "$bb" 2>&1 | grep -q "not a dynamic"; then
  bb=/bin/busybox
fi
if [ ! -x "$bb" ]; then
  echo "busybox-rootfs.sh: /bin/busybox is missing: install it with 'apt-get install busybox-static'" >&2
  exit 4
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,etc,tmp,proc,sys,dev,gantry}
cp "$bb" "$tmp/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$tmp/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$tmp/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$tmp/etc/group"
chmod 1777 "$tmp/tmp"
tar --numeric-owner --owner=0 --group=0 -C "$tmp" -cf "$out" .
