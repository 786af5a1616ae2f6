# make-binary-cache as a flake.
#
#   nix build github:…/make-binary-cache            the program (packages.<system>.default)
#   nix flake check                                  builds a cache and substitutes from it
#
# and in another flake:
#
#   inputs.make-binary-cache.url = "…";
#   pkgs = import nixpkgs { inherit system; overlays = [ make-binary-cache.overlays.default ]; };
#   cache = pkgs.mkBinaryCache { rootPaths = [ pkgs.hello ]; };
#
# No flake.lock is committed: it can only be written where nixpkgs can be
# fetched, which is not where this repository is tested. Nix writes one on
# first use; `inputs.make-binary-cache.inputs.nixpkgs.follows = "nixpkgs"`
# makes a consuming flake use its own nixpkgs instead. The tests evaluate and
# build this flake with `--override-input nixpkgs path:…/tests/nixpkgs-stub`.
{
  description = "mkBinaryCache with a Rust builder: flat-file Nix binary caches, every NAR checked";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      # Linux only: the builder relies on syncfs(2).
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems =
        f:
        builtins.listToAttrs (
          map (system: {
            name = system;
            value = f system;
          }) systems
        );

      pkgsFor =
        system:
        import nixpkgs {
          inherit system;
          overlays = [ self.overlays.default ];
        };
    in
    {
      # Adds the program and the functions to pkgs. mkBinaryCache replaces
      # nixpkgs' own, taking the same arguments (and more).
      overlays.default = final: prev: {
        make-binary-cache = final.callPackage ./nix/package.nix { };
        mkBinaryCache = final.callPackage ./nix { };
        mergeBinaryCaches = final.callPackage ./nix/merge.nix { };
      };

      packages = forAllSystems (
        system:
        let
          pkgs = pkgsFor system;
        in
        {
          default = pkgs.make-binary-cache;
          inherit (pkgs) make-binary-cache;
        }
      );

      # No `lib` output: flake `lib` attributes are independent of the system,
      # and mkBinaryCache needs a package set for one (stdenvNoCC and the
      # builder built for it). The overlay is the way in; for a flake that
      # does not use overlays, the functions built with this flake's nixpkgs
      # are here, as nixpkgs itself keeps functions in legacyPackages.
      legacyPackages = forAllSystems (
        system:
        let
          pkgs = pkgsFor system;
        in
        {
          inherit (pkgs) make-binary-cache mkBinaryCache mergeBinaryCaches;
        }
      );

      # The end-to-end check of nix/tests.nix (also every cache's
      # passthru.tests.substitutes): caches built with mkBinaryCache, then
      # substituted into a fresh store inside a build and verified by Nix.
      checks = forAllSystems (
        system:
        let
          pkgs = pkgsFor system;
        in
        {
          mkBinaryCache = pkgs.callPackage ./nix/tests.nix { };
          inherit (pkgs) make-binary-cache;
        }
      );

      # `nix fmt`: the RFC 166 style the Nix files here are written in
      # (nixpkgs' `nixfmt`; on a nixpkgs older than 25.05, `nixfmt-rfc-style`).
      formatter = forAllSystems (system: nixpkgs.legacyPackages.${system}.nixfmt);
    };
}
