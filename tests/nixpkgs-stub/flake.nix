# The stand-in for nixpkgs as a flake, so that tests/packaging.rs can evaluate
# and build the repository's flake.nix with
# `--override-input nixpkgs path:<a copy of this directory>` (nixpkgs cannot be
# fetched where the tests run). Only what flake.nix uses: `legacyPackages`,
# `lib`, and `import nixpkgs { system; overlays; }` through default.nix.
{
  description = "A tiny stand-in for nixpkgs, for the tests of make-binary-cache";

  outputs =
    { self }:
    {
      lib = import ./lib.nix;
      legacyPackages = builtins.listToAttrs (
        map
          (system: {
            name = system;
            value = import ./. { inherit system; };
          })
          [
            "x86_64-linux"
            "aarch64-linux"
          ]
      );
    };
}
