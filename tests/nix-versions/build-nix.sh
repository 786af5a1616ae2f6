#!/usr/bin/env bash
# Builds a newer Nix from source inside the Debian 13 tree of run.sh, for
# its checks: Nix 2.31 (the newest whose dependencies Debian 13 has, but
# BLAKE3's C library, built here from its repository; 2.32 and later want
# boost >= 1.87 and libcurl >= 8.17). By hand, as root, after run.sh made
# the tree:
#
#   tests/nix-versions/build-nix.sh NIX_GIT_DIR BLAKE3_GIT_DIR [DIR]
#
# NIX_GIT_DIR and BLAKE3_GIT_DIR are git directories of NixOS/nix and
# BLAKE3-team/BLAKE3 (a bare clone will do). Installs under
# /opt/nix-<version> in the tree; a finished build is kept and reused.
# Options turned off: unit tests, language bindings and documentation (none
# is what a cache is judged by, and each needs more); readline instead of
# editline, which Debian 13 does not package.
set -euo pipefail
nix_git=$1 blake3_git=$2
dir=${3:-/var/tmp/nix-versions}
root=$dir/trixie
nix_tag=${NIX_TAG:-2.31.5} blake3_tag=${BLAKE3_TAG:-1.8.2}
prefix=/opt/nix-$nix_tag
[ -x "$root/usr/bin/nix" ] || { echo "build-nix.sh: run tests/nix-versions/run.sh first" >&2; exit 1; }
if [ -x "$root$prefix/bin/nix" ]; then
    echo "build-nix.sh: $prefix/bin/nix is built"
    exit 0
fi
rm -rf "$root/src/nix" "$root/src/blake3" && mkdir -p "$root/src/nix" "$root/src/blake3"
git -C "$nix_git" archive "$nix_tag" | tar -x -C "$root/src/nix"
git -C "$blake3_git" archive "$blake3_tag" | tar -x -C "$root/src/blake3"
unshare --mount --propagation private sh -c '
    root=$1; shift
    mount --bind "$root" "$root"
    for d in proc dev sys; do mount --rbind /$d "$root/$d"; done
    mkdir -p "$root/.oldroot"
    cd "$root" && pivot_root . .oldroot && umount -l /.oldroot
    cd / && exec env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root prefix="$1" bash -euxc "
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            build-essential cmake meson ninja-build pkg-config bison flex git \
            libboost-dev libboost-container-dev libboost-context-dev libboost-coroutine-dev libboost-iostreams-dev libboost-url-dev \
            libarchive-dev libsodium-dev libbrotli-dev libcpuid-dev nlohmann-json3-dev libcurl4-openssl-dev \
            libsqlite3-dev libseccomp-dev libgc-dev libgit2-dev libtoml11-dev libreadline-dev liblowdown-dev \
            libssl-dev
        cmake -S /src/blake3/c -B /src/blake3/build -G Ninja -DCMAKE_INSTALL_PREFIX=/usr/local -DCMAKE_BUILD_TYPE=Release
        ninja -C /src/blake3/build install
        cd /src/nix
        meson setup build --prefix=\$prefix --buildtype=release \
            -Dunit-tests=false -Dbindings=false -Ddoc-gen=false -Dlibcmd:readline-flavor=readline
        ninja -C build install
    "' sh "$root" "$prefix"
"$root$prefix/bin/nix" --version 2>/dev/null || true
