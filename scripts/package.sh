#!/usr/bin/env bash
# Build what a user installs, into target/dist/:
#   heartbeat-monitor_<version>_amd64.deb        Debian package (dpkg -i)
#   heartbeat-<version>-x86_64-linux.tar.gz      release archive, and its
#   heartbeat-<version>-x86_64-linux.tar.gz.sha256
#   image/                                       container build context, built
#                                                as heartbeat:<version> when podman is here
#
#   scripts/package.sh                  # release build (reused when fresh), then all of the above
#   scripts/package.sh --no-image       # without the container image
#   scripts/package.sh --bin-dir DIR    # package binaries already built in DIR (the tests
#                                       # pass their debug build: no release build needed)
#   scripts/package.sh --out DIR --image-tag TAG
#   scripts/package.sh --fast           # light compression: for tests, not for release
#
# Needs dpkg-deb, tar, gzip, sha256sum (Debian's dpkg, coreutils); strip and
# ldd if present; podman for the image.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
bin_dir=""
out="$target_dir/dist"
image=true
image_tag=""
fast=false
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-image) image=false; shift ;;
    --fast) fast=true; shift ;;
    --image-tag) image_tag=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '== %s\n' "$*"; }

# xz for the package and gzip -9 for the archive, as releases are; --fast
# trades size for time (a test's debug binaries are large).
if $fast; then deb_compress=(-Zgzip -z1); gzip_level=-1; else deb_compress=(-Zxz); gzip_level=-9; fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' monitor/Cargo.toml | head -1)
[ -n "$version" ] || { echo "package.sh: no version in monitor/Cargo.toml" >&2; exit 1; }
image_tag=${image_tag:-heartbeat:$version}
arch=amd64
triple=x86_64-linux
[ "$(uname -m)" = x86_64 ] || { echo "package.sh: builds x86_64 packages only, on x86_64" >&2; exit 1; }

if [ -z "$bin_dir" ]; then
  log "release build (nothing to do when it is fresh)"
  cargo build --release --locked -p monitor -p mock-service
  bin_dir="$target_dir/release"
fi
for bin in monitor mock-service; do
  [ -x "$bin_dir/$bin" ] || { echo "package.sh: $bin_dir/$bin is missing; build it first" >&2; exit 1; }
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
stage="$out/.stage"
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/man" "$stage/complete"

log "binaries, man pages and completions"
for bin in monitor mock-service; do
  cp "$bin_dir/$bin" "$stage/bin/$bin"
  # Symbols stay in the build; users get the smaller binary (as dh_strip does).
  if command -v strip >/dev/null 2>&1; then strip --strip-unneeded "$stage/bin/$bin"; fi
  "$stage/bin/$bin" --generate man > "$stage/man/$bin.1"
  "$stage/bin/$bin" --generate complete-bash > "$stage/complete/$bin.bash"
  "$stage/bin/$bin" --generate complete-zsh > "$stage/complete/_$bin"
  "$stage/bin/$bin" --generate complete-fish > "$stage/complete/$bin.fish"
done
"$stage/bin/monitor" --version

# Files keep a fixed time (the commit's) and root as owner: the same tree
# gives the same archive.
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)

log "Debian package"
deb="$stage/deb"
install -d "$deb/DEBIAN" "$deb/usr/bin" "$deb/etc/heartbeat" \
  "$deb/lib/systemd/system" "$deb/usr/share/man/man1" \
  "$deb/usr/share/bash-completion/completions" "$deb/usr/share/zsh/vendor-completions" \
  "$deb/usr/share/fish/vendor_completions.d" "$deb/usr/share/doc/heartbeat-monitor"
for bin in monitor mock-service; do
  install -m 0755 "$stage/bin/$bin" "$deb/usr/bin/$bin"
  gzip -9n < "$stage/man/$bin.1" > "$deb/usr/share/man/man1/$bin.1.gz"
  install -m 0644 "$stage/complete/$bin.bash" "$deb/usr/share/bash-completion/completions/$bin"
  install -m 0644 "$stage/complete/_$bin" "$deb/usr/share/zsh/vendor-completions/_$bin"
  install -m 0644 "$stage/complete/$bin.fish" "$deb/usr/share/fish/vendor_completions.d/$bin.fish"
done
install -m 0644 config/default.toml "$deb/etc/heartbeat/monitor.toml"
install -m 0600 packaging/debian/monitor.env "$deb/etc/heartbeat/monitor.env"
install -m 0600 packaging/debian/mock-service.env "$deb/etc/heartbeat/mock-service.env"
install -m 0644 packaging/systemd/heartbeat-monitor.service packaging/systemd/mock-service@.service \
  "$deb/lib/systemd/system/"
gzip -9n < README.md > "$deb/usr/share/doc/heartbeat-monitor/README.md.gz"
cat > "$deb/usr/share/doc/heartbeat-monitor/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: heartbeat
License: MIT
COPYRIGHT
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$deb/DEBIAN/$script"
done
printf '%s\n' /etc/heartbeat/monitor.toml /etc/heartbeat/monitor.env /etc/heartbeat/mock-service.env \
  > "$deb/DEBIAN/conffiles"
# The newest glibc symbol version the binaries use is the oldest libc6 they run on.
glibc=$(objdump -T "$stage/bin/monitor" "$stage/bin/mock-service" 2>/dev/null \
  | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
cat > "$deb/DEBIAN/control" <<CONTROL
Package: heartbeat-monitor
Version: $version
Architecture: $arch
Maintainer: heartbeat maintainers <heartbeat@localhost>
Depends: libc6 (>= ${glibc:-2.34}), libgcc-s1
Section: net
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$deb" | cut -f1)
Description: heartbeat failure detection for microservices on RabbitMQ
 A monitor pings every service through a fanout exchange and tells within
 seconds, without false alarms, which instances are alive: a terminal
 dashboard, JSON lines, Prometheus metrics, a status page, alerts and
 history. mock-service is a stand-in service for trying it out.
 .
 heartbeat-monitor.service runs the monitor (Type=notify, hardened,
 DynamicUser); mock-service@NAME.service runs a stand-in service.
CONTROL
(cd "$deb" && find usr lib etc -type f -print0 | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
find "$deb" -exec touch -h -d "@$epoch" {} +
deb_file="$out/heartbeat-monitor_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${deb_compress[@]}" --build "$deb" "$deb_file" >/dev/null
echo "$deb_file"

log "release archive"
name="heartbeat-$version-$triple"
tree="$stage/archive/$name"
install -d "$tree/man" "$tree/complete"
install -m 0755 "$stage/bin/monitor" "$stage/bin/mock-service" "$tree/"
install -m 0644 README.md "$tree/README.md"
install -m 0644 config/default.toml "$tree/monitor.toml"
install -m 0644 "$stage"/man/*.1 "$tree/man/"
install -m 0644 "$stage"/complete/* "$tree/complete/"
install -m 0644 packaging/systemd/heartbeat-monitor.service packaging/systemd/mock-service@.service "$tree/"
archive="$out/$name.tar.gz"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  -C "$stage/archive" -cf - "$name" | gzip "$gzip_level" -n > "$archive"
(cd "$out" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")
echo "$archive"

log "container image context"
context="$out/image"
rm -rf "$context"
install -d "$context/rootfs/usr/bin" "$context/rootfs/etc/ssl/certs" "$context/rootfs/etc/heartbeat" \
  "$context/rootfs/tmp" "$context/state"
chmod 1777 "$context/rootfs/tmp"
install -m 0755 "$stage/bin/monitor" "$stage/bin/mock-service" "$context/rootfs/usr/bin/"
install -m 0644 config/default.toml "$context/rootfs/etc/heartbeat/monitor.toml"
install -m 0644 packaging/Containerfile "$context/Containerfile"
# glibc's loader and the libraries the binaries load, at the paths they are loaded from.
libs=$(for bin in monitor mock-service; do
  ldd "$stage/bin/$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u)
for lib in $libs; do
  install -D -m 0755 "$(readlink -f "$lib")" "$context/rootfs$lib"
done
certs=/etc/ssl/certs/ca-certificates.crt
[ -f "$certs" ] || { echo "package.sh: $certs is missing (apt-get install ca-certificates)" >&2; exit 1; }
install -m 0644 "$certs" "$context/rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0::/:/sbin/nologin\nheartbeat:x:65532:65532::/var/lib/heartbeat:/sbin/nologin\n' \
  > "$context/rootfs/etc/passwd"
printf 'root:x:0:\nheartbeat:x:65532:\n' > "$context/rootfs/etc/group"
echo "$context"
if ! $image; then
  log "image not built (--no-image)"
elif ! command -v podman >/dev/null 2>&1; then
  log "image not built: podman is not installed (apt-get install podman); the context is $context"
else
  log "image $image_tag"
  podman build --quiet --format docker --timestamp "$epoch" -t "$image_tag" -f "$context/Containerfile" "$context"
fi
rm -rf "$stage"
