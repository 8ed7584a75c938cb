#!/bin/sh
# Build the example's base image FROM scratch with the host's static busybox: no registry, no network.
#   sh base.sh [TAG]        (Debian: apt-get install buildah runc busybox-static)
set -eu
tag=${1:-localhost/sqldom-example/busybox:1}
busybox=$(command -v busybox)
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/root" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
echo 'root:x:0:' > "$rootfs/etc/group"
ctr=$(buildah from --quiet scratch)
buildah copy --quiet "$ctr" "$rootfs/" /
buildah config --env PATH=/bin --cmd /bin/sh --workingdir / "$ctr"
# reproducible: no timestamps, no history, no buildah version label
buildah commit --quiet --rm --timestamp 0 --omit-history --identity-label=false "$ctr" "$tag"
