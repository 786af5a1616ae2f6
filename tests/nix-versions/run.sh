#!/usr/bin/env bash
# The end-to-end checks of make-binary-cache under another Nix than the
# host's: Debian 13's nix-bin (2.26) in a chroot made once with
# debootstrap, the sandbox on. Run by hand, as root (not in .ci/run: it
# fetches a Debian release); prints a Markdown table of the checks.
#
#   tests/nix-versions/run.sh [DIR]      # DIR: where the chroot lives
#                                        # [default: /var/tmp/nix-versions]
#   tests/nix-versions/run.sh --host     # this machine's own Nix (2.8 here),
#                                        # its real store, the sandbox on
#   NIX_PREFIX=/opt/nix-2.31.5 tests/nix-versions/run.sh
#                                        # the Nix build-nix.sh built there,
#                                        # with a /nix of its own
#
# Debian's mirror is read from this machine's own apt sources. The chroot
# is reused while it has Nix; delete DIR to start afresh. The checks
# themselves are tests/nix-versions/checks.sh, run inside it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${1:-}" = --host ]; then
    # The same checks under the host's Nix: /work, /tmp and /usr/local/bin
    # private to a mount namespace, the configuration in a directory of its
    # own (NIX_CONF_DIR), builds sandboxed.
    (cd "$repo" && cargo build --release --locked -q)
    work=$(mktemp -d /var/tmp/nix-versions-host.XXXXXX)
    mkdir -p "$work/work" "$work/conf" "$work/bin"
    cp -r "$repo/tests/fixtures" "$repo/tests/nixpkgs-stub" "$repo/nix" "$repo/tests/nix-versions/checks.sh" \
        "$repo/Cargo.toml" "$repo/Cargo.lock" "$repo/src" "$work/work/"
    install -m 0755 "$repo/target/release/make-binary-cache" "$work/bin/make-binary-cache"
    cat > "$work/conf/nix.conf" <<'CONF'
sandbox = true
sandbox-fallback = false
substituters =
extra-sandbox-paths = /usr /lib=/usr/lib /lib64=/usr/lib64 /bin/sh=/usr/bin/bash
experimental-features = nix-command
build-users-group =
CONF
    status=0
    unshare --mount --propagation private sh -c '
        work=$1
        mount --bind "$work/work" /work && mount --bind "$work/bin" /usr/local/bin && mount -t tmpfs tmpfs /tmp
        exec env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root NIX_CONF_DIR="$work/conf" bash /work/checks.sh
    ' sh "$work" || status=$?
    rm -rf "$work"
    exit $status
fi
dir=${1:-/var/tmp/nix-versions}
root=$dir/trixie

mirror() {
    local uri
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ {u = $2} /^Suites:/ && $0 !~ /security/ {print u; exit}' /etc/apt/sources.list.d/debian.sources)
    else
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || { echo "run.sh: no Debian mirror in this machine's apt sources" >&2; exit 1; }
    echo "$uri"
}

# Runs "$@" with the tree as its root, in a mount namespace of its own:
# pivot_root, not chroot, since the kernel refuses a chrooted process the
# user namespace Nix's sandbox needs. With $NIX_PREFIX, that Nix comes first
# on PATH and gets a /nix of its own (a newer Nix may upgrade the store's
# database past what 2.26 reads).
nix_prefix=${NIX_PREFIX:-}
in_root() {
    unshare --mount --propagation private sh -c '
        root=$1 prefix=$2; shift 2
        mount --bind "$root" "$root"
        for d in proc dev sys; do mount --rbind /$d "$root/$d"; done
        if [ -n "$prefix" ]; then
            own="$root/nix-of$(echo "$prefix" | tr / -)"
            mkdir -p "$own" && mount --bind "$own" "$root/nix"
        fi
        mkdir -p "$root/.oldroot"
        cd "$root" && pivot_root . .oldroot && umount -l /.oldroot
        cd / && exec env -i PATH="${prefix:+$prefix/bin:}/usr/local/bin:/usr/bin:/bin" HOME=/root \
            ${prefix:+LD_LIBRARY_PATH=$prefix/lib/x86_64-linux-gnu} NIX_CONF_DIR=/etc/nix "$@"' sh "$root" "$nix_prefix" "$@"
}

if [ -n "$nix_prefix" ] && [ ! -x "$root$nix_prefix/bin/nix" ]; then
    echo "run.sh: no Nix at $nix_prefix in the tree: build it with tests/nix-versions/build-nix.sh" >&2
    exit 1
fi
if [ ! -x "$root/usr/bin/nix" ]; then
    command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
    mkdir -p "$dir"
    [ -d "$root/etc" ] || debootstrap --variant=minbase trixie "$root" "$(mirror)"
    in_root /bin/sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends nix-bin ca-certificates xz-utils zstd'
fi
# Offline, sandboxed; the tree's own /usr in the sandbox for the fixtures'
# builders (PATH=/usr/bin:/bin) and our binary's libraries, and a /bin/sh
# (Debian's Nix has that one built in; one built from source has none).
# Not all of /bin: Nix
# puts its sandbox shell at /bin/sh by creating an empty file there, which
# through a bind of /usr/bin would empty the tree's dash.
mkdir -p "$root/etc/nix"
cat > "$root/etc/nix/nix.conf" <<'CONF'
sandbox = true
substituters =
extra-sandbox-paths = /usr /lib=/usr/lib /lib64=/usr/lib64 /bin/sh=/usr/bin/bash-static
experimental-features = nix-command
build-users-group =
sandbox-fallback = false
CONF

(cd "$repo" && cargo build --release --locked -q)
install -m 0755 "$repo/target/release/make-binary-cache" "$root/usr/local/bin/make-binary-cache"
rm -rf "$root/work" && mkdir -p "$root/work"
cp -r "$repo/tests/fixtures" "$repo/tests/nixpkgs-stub" "$repo/nix" "$repo/tests/nix-versions/checks.sh" \
    "$repo/Cargo.toml" "$repo/Cargo.lock" "$repo/src" "$root/work/"
in_root /bin/bash /work/checks.sh
