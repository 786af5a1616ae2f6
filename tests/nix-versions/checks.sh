#!/usr/bin/env bash
# The checks of run.sh, inside the chroot, under its Nix. Each row: what was
# checked and whether it held; the exit status says whether all did.
set -uo pipefail
cd /work
export NIX_CONFIG='substituters ='
w=/tmp/checks
rm -rf "$w" && mkdir -p "$w"
rows=()
failed=0
check() { # check NAME COMMAND...
    local name=$1; shift
    if "$@" > "$w/last.log" 2>&1; then
        rows+=("| $name | yes |")
    else
        rows+=("| $name | **no**: $(tail -n 1 "$w/last.log" | cut -c1-160) |")
        failed=1
    fi
}
# Real Nix judges a cache: the closure of ROOT from CACHE into a fresh store,
# verified there.
substitutes() { # substitutes CACHE ROOT [nix copy options...]
    local cache=$1 root=$2 store
    shift 2
    store=$(mktemp -d "$w/store.XXXX")
    nix copy --from "file://$cache" --to "$store" "$@" "$root" && nix-store --store "$store" --verify --check-contents
}

version=$(nix --version)
nonce=$(date +%s)
root=$(nix-build --no-out-link fixtures/closure.nix -A a --argstr nonce "$nonce" 2> "$w/build.log")
check "the fixture closure builds with the sandbox on" test -n "$root"
# The sandbox really is on: a build does not see /work.
check "a build cannot see /work (the sandbox is on)" sh -c "! nix-build --no-out-link -E '
    builtins.derivation { name = \"peek\"; system = builtins.currentSystem; builder = \"/bin/sh\";
      args = [ \"-c\" \"test -e /work/checks.sh && echo seen > \$out\" ]; nonce = \"$nonce\"; }'"
nix path-info --json --recursive "$root" > "$w/closure.json"
check "\`nix path-info --json\` of this version read by \`--closure\`" \
    make-binary-cache --closure "$w/closure.json" --out "$w/zstd" --write-nar-listing -q
for c in none xz zstd; do
    [ -d "$w/$c" ] || make-binary-cache --closure "$w/closure.json" --out "$w/$c" --compression "$c" -q
    check "our $c cache substitutes (\`nix copy\`, \`--verify --check-contents\`)" substitutes "$w/$c" "$root" --no-require-sigs
    nix copy --to "file://$w/nix-$c?compression=$c" "$root"
    check "\`verify\` passes this version's \`nix copy\` $c cache" make-binary-cache verify "$w/nix-$c"
done
# Byte for byte: ours and this version's, uncompressed. What only one side
# has is named in the row: ours always has its manifest and the empty
# directories of format::layout::EMPTY_DIRS (some Nix versions make some).
only=$(diff -rq "$w/none" "$w/nix-none" | sed -n 's|^Only in \([^:]*\): \(.*\)$|\1/\2|p' | sed "s|^$w/||" | tr '\n' ' ')
differ=$(diff -rq "$w/none" "$w/nix-none" | grep -v '^Only in' || true)
check "our none cache is this version's \`nix copy\`, byte for byte (only one side: ${only:-nothing})" test -z "$differ"
tree=$(grep -o '/nix/store/[a-z0-9]*-e2e-b-tree' "$w/closure.json" | head -n 1)
check "\`.ls\` listings read by \`nix store ls --store file://…\`" \
    sh -c "nix store ls --store 'file://$w/zstd' '$tree/bin' | grep -q run"
# Read-only: a bind mount remounted read-only, substituted from.
mkdir -p "$w/ro"
check "a read-only bind mount of our cache substitutes" unshare --mount --propagation unchanged sh -c "
    mount --bind '$w/zstd' '$w/ro' && mount -o remount,bind,ro '$w/ro' &&
    store=\$(mktemp -d '$w/store.XXXX') && nix copy --no-require-sigs --from 'file://$w/ro' --to \"\$store\" '$root' &&
    nix-store --store \"\$store\" --verify --check-contents"
# Signatures: our sign, this version's require-sigs.
nix-store --generate-binary-cache-key matrix-1 "$w/sk" "$w/pk"
nix-store --generate-binary-cache-key other-1 "$w/sk2" "$w/pk2"
make-binary-cache sign --secret-key-file "$w/sk" --out "$w/signed" "$w/zstd" 2> /dev/null
check "a signed cache substitutes with \`require-sigs = true\` and our key trusted" \
    substitutes "$w/signed" "$root" --option require-sigs true --option trusted-public-keys "$(cat "$w/pk")"
check "... and is refused with another key trusted" \
    sh -c "! nix copy --from 'file://$w/signed' --to '$w/refused' --option require-sigs true --option trusted-public-keys '$(cat "$w/pk2")' '$root'"
# mkBinaryCache through nix-build of nix/, sandbox on, each compression.
for c in none xz zstd; do
    cache=$(nix-build --no-out-link -E "
        let pkgs = import ./nixpkgs-stub { makeBinaryCacheBin = /usr/local/bin/make-binary-cache; };
            mkBinaryCache = pkgs.callPackage ./nix { };
            fixture = (import ./fixtures/closure.nix { nonce = \"$nonce\"; }).a;
        in mkBinaryCache { rootPaths = [ fixture ]; compression = \"$c\"; }" 2> "$w/mk-$c.log")
    check "\`mkBinaryCache\` ($c) builds with the sandbox on and substitutes" substitutes "$cache" "$root" --no-require-sigs
done

echo "Checks under $version (sandbox on), $(date -u +%Y-%m-%d):"
echo
echo "| check | holds |"
echo "|---|---|"
printf '%s\n' "${rows[@]}"
exit $failed
