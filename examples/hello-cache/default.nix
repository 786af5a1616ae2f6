# Try mkBinaryCache without nixpkgs: a cache holding a tiny `hello` program,
# built with the stand-in for nixpkgs in tests/nixpkgs-stub (whose
# rustPlatform.buildRustPackage packages the binary cargo built instead of
# compiling it). From the repository root:
#
#   cargo build --release
#   nix-build examples/hello-cache --option substituters '' --out-link hello-cache
#   hello=$(nix-build examples/hello-cache -A hello --option substituters '' --no-out-link)
#
# `hello-cache` is the cache. (Not `result`: a second nix-build would point
# `result` at hello, and `nix copy --from file://…` of a store path as root
# writes a nix-cache-info into it, which damages the store.) To see Nix
# substitute from it on this machine (where `hello` is already in
# /nix/store, so copy into another store):
#
#   nix --extra-experimental-features nix-command copy --no-require-sigs \
#       --from "file://$PWD/hello-cache" --to /tmp/hello-store "$hello"
#   nix-store --store /tmp/hello-store --verify --check-contents
#   /tmp/hello-store$hello/bin/hello
#
# (`--option substituters ''` keeps Nix from trying the public cache, which
# takes seconds where it is unreachable.) With real nixpkgs instead of the
# stand-in, the same file builds the program from source:
#
#   nix-build examples/hello-cache --arg pkgs 'import <nixpkgs> { }'
#
# tests/packaging.rs builds this example and substitutes from it.
{
  # The program for the stand-in to package; another path with --arg.
  makeBinaryCacheBin ? ../../target/release/make-binary-cache,
  pkgs ? import ../../tests/nixpkgs-stub {
    makeBinaryCacheBin =
      if builtins.pathExists makeBinaryCacheBin then
        makeBinaryCacheBin
      else
        throw "examples/hello-cache: ${toString makeBinaryCacheBin} does not exist: run `cargo build --release` first, or pass --arg makeBinaryCacheBin /path/to/make-binary-cache";
  },
}:

let
  inherit (import ../.. { inherit pkgs; }) mkBinaryCache;

  hello = pkgs.stdenvNoCC.mkDerivation {
    name = "hello-from-a-cache";
    buildCommand = ''
      mkdir -p "$out/bin"
      printf '#!/bin/sh\necho "Hello from a binary cache"\n' > "$out/bin/hello"
      chmod +x "$out/bin/hello"
    '';
  };
in
mkBinaryCache {
  rootPaths = [ hello ];
  compression = "xz";
}
// {
  inherit hello;
}
