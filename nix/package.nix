# The `make-binary-cache` program, built from this repository.
{
  lib,
  rustPlatform,
}:

let
  cargoToml = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "make-binary-cache";
  inherit (cargoToml.package) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  meta = {
    description = "Write a flat-file Nix binary cache for a closure, as the builder of mkBinaryCache";
    license = lib.licenses.mit;
    mainProgram = "make-binary-cache";
  };
}
