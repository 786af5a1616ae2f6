# The tests of mkBinaryCache, in nixpkgs' `passthru.tests` style: one
# derivation that builds a small cache for each compression and, inside its own
# build, substitutes the closure from each into an empty chroot store with
# real Nix, as a receiving machine would, then has Nix verify it.
#
# Every cache mkBinaryCache returns carries it as `passthru.tests.substitutes`
# (the same test for all: it makes caches of its own), and the flake runs it
# as a check:
#
#   nix-build -E 'with import <nixpkgs> { }; (mkBinaryCache { rootPaths = [ ]; }).tests.substitutes'
#   nix build .#checks.x86_64-linux.mkBinaryCache
#
# The build runs Nix as an ordinary program: everything it keeps (the chroot
# store, its database, the narinfo cache under $HOME, its configuration) lives
# under $TMPDIR, and no substituter but the cache under test is configured, so
# it needs neither the network nor the daemon, and works in the sandbox.
{
  lib,
  stdenvNoCC,
  nix,
  mkBinaryCache,
}:

let
  # A two-path closure with every kind of NAR entry: `root` refers to `leaf`
  # by a file's contents and by a symlink, and to itself.
  leaf = stdenvNoCC.mkDerivation {
    name = "mkbinarycache-test-leaf";
    buildCommand = ''
      mkdir -p "$out/share/empty" "$out/bin"
      echo "a leaf" > "$out/share/leaf.txt"
      printf '#!/bin/sh\necho leaf\n' > "$out/bin/leaf"
      chmod +x "$out/bin/leaf"
    '';
  };

  root = stdenvNoCC.mkDerivation {
    name = "mkbinarycache-test-root";
    buildCommand = ''
      mkdir -p "$out"
      echo "${leaf}" > "$out/leaf-path"
      echo "$out" > "$out/self-path"
      ln -s "${leaf}/bin/leaf" "$out/leaf"
    '';
  };

  compressions = [
    "none"
    "xz"
    "zstd"
  ];

  caches = map (
    compression:
    mkBinaryCache {
      name = "mkbinarycache-test-cache-${compression}";
      rootPaths = [ root ];
      inherit compression;
    }
  ) compressions;
in
stdenvNoCC.mkDerivation {
  name = "mkbinarycache-test-substitutes";
  nativeBuildInputs = [ nix ];

  inherit root leaf caches;

  buildCommand = ''
    export HOME="$TMPDIR/home" NIX_CONF_DIR="$TMPDIR/etc" NIX_STATE_DIR="$TMPDIR/state"
    export NIX_LOG_DIR="$TMPDIR/log" XDG_CACHE_HOME="$TMPDIR/cache"
    mkdir -p "$HOME" "$NIX_CONF_DIR"
    # Only the cache under test: the public cache is unreachable in a build.
    cat > "$NIX_CONF_DIR/nix.conf" <<EOF
    substituters =
    require-sigs = false
    build-users-group =
    sandbox = false
    EOF

    n=0
    for cache in $caches; do
      n=$((n + 1))
      store="$TMPDIR/store-$n"
      echo "substituting from $cache into $store"

      if nix-store --store "$store" --check-validity "$root" 2>/dev/null; then
        echo "$root is valid in the fresh store $store before substituting" >&2
        exit 1
      fi

      nix-store --store "$store" --realise "$root" --option substituters "file://$cache"

      # Nix has both paths now, with the NarHash the cache promised
      # (substitution checks it), and their contents still match it.
      nix-store --store "$store" --check-validity "$root" "$leaf"
      nix-store --store "$store" --verify --check-contents

      # The copies are the paths we built, not just self-consistent.
      for p in "$root" "$leaf"; do
        got=$(nix-store --store "$store" --query --hash "$p")
        want=sha256:$(nix-hash --type sha256 --base32 "$p")
        if [ "$got" != "$want" ]; then
          echo "$p: NarHash $got in $store, but the built path has $want" >&2
          exit 1
        fi
      done
      refs=$(nix-store --store "$store" --query --references "$root" | sort | tr '\n' ' ')
      want_refs=$(printf '%s\n' "$root" "$leaf" | sort | tr '\n' ' ')
      if [ "$refs" != "$want_refs" ]; then
        echo "$root: references '$refs' in $store, expected '$want_refs'" >&2
        exit 1
      fi
    done

    echo "substituted and verified from $n caches" > "$out"
  '';

  meta = {
    description = "Substitutes the closure from caches made by mkBinaryCache into a fresh store";
    license = lib.licenses.mit;
  };
}
