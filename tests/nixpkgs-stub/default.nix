# A tiny stand-in for nixpkgs, just enough for nix/ and ./default.nix, used by
# the end-to-end tests (nixpkgs cannot be fetched where they run).
#
#   import ./tests/nixpkgs-stub { makeBinaryCacheBin = /path/to/make-binary-cache; }
#
# `makeBinaryCacheBin` (a path, or an absolute path as a string) is a prebuilt
# `make-binary-cache` executable: cargo cannot run inside a Nix build here, so
# `rustPlatform.buildRustPackage` does not compile anything, it copies that
# file to $out/bin/<meta.mainProgram>. Everything else mirrors what nixpkgs
# does with the attributes nix/ passes.
{
  makeBinaryCacheBin ? null,
}:

let
  lib = import ./lib.nix;

  system = builtins.currentSystem;

  # Like stdenv.mkDerivation, for what nix/ uses: `realBuilder` and `args`
  # choose the builder (else /bin/sh runs `buildCommand`), `passthru` and
  # `meta` stay out of the derivation, `__structuredAttrs` is passed on, and
  # null attributes are dropped (`__ignoreNulls`, as nixpkgs sets it).
  mkDerivation =
    attrs:
    let
      passthru = attrs.passthru or { };
      meta = attrs.meta or { };
      drvAttrs = removeAttrs attrs [
        "passthru"
        "meta"
      ] // {
        inherit system;
        builder = attrs.realBuilder or "/bin/sh";
        args = attrs.args or [
          "-eu"
          "-c"
          attrs.buildCommand
        ];
        __ignoreNulls = true;
      };
      drv = builtins.derivation drvAttrs;
    in
    drv // passthru // { inherit meta passthru; };

  stdenvNoCC = {
    inherit mkDerivation system;
    shell = "/bin/sh";
  };

  prebuilt =
    if makeBinaryCacheBin == null then
      throw "nixpkgs-stub: rustPlatform.buildRustPackage needs a prebuilt binary: import the stub with { makeBinaryCacheBin = ...; }"
    else
      builtins.path {
        name = "make-binary-cache-prebuilt";
        path = makeBinaryCacheBin;
      };

  rustPlatform.buildRustPackage =
    {
      pname,
      version,
      src,
      cargoLock,
      meta ? { },
      passthru ? { },
      ...
    }:
    mkDerivation {
      name = "${pname}-${version}";
      inherit pname version passthru;
      # Referenced so that a broken source filter or lock file path fails
      # here as it would in nixpkgs.
      inherit src;
      cargoLockFile = cargoLock.lockFile;
      inherit prebuilt;
      mainProgram = meta.mainProgram or pname;
      PATH = "/usr/bin:/bin";
      buildCommand = ''
        mkdir -p "$out/bin"
        cp "$prebuilt" "$out/bin/$mainProgram"
        chmod 0555 "$out/bin/$mainProgram"
      '';
      inherit meta;
    };

  callPackage =
    fn: args:
    let
      f = if builtins.isFunction fn || fn ? __functor then fn else import fn;
      auto = builtins.intersectAttrs (lib.functionArgs f) pkgs;
    in
    lib.makeOverridable f (auto // args);

  pkgs = {
    inherit
      lib
      stdenvNoCC
      callPackage
      rustPlatform
      ;
    stdenv = stdenvNoCC;
  };
in
pkgs
