# The `make-binary-cache` program, built from this repository.
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
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

  nativeBuildInputs = [ installShellFiles ];

  # The completions and the manual page are made by the binary, from the
  # flag table that also makes its parser and --help.
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    for shell in bash zsh fish; do
      $out/bin/make-binary-cache --generate complete-$shell > make-binary-cache.$shell
    done
    installShellCompletion make-binary-cache.{bash,zsh,fish}
    $out/bin/make-binary-cache --generate man > make-binary-cache.1
    installManPage make-binary-cache.1
  '';

  meta = {
    description = "Write a flat-file Nix binary cache for a closure, as the builder of mkBinaryCache";
    license = lib.licenses.mit;
    mainProgram = "make-binary-cache";
  };
}
