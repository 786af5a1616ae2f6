# A tiny stand-in for nixpkgs, just enough for nix/ and ./default.nix, used by
# the end-to-end tests (nixpkgs cannot be fetched where they run).
#
#   import ./tests/nixpkgs-stub { makeBinaryCacheBin = /path/to/make-binary-cache; }
#
# `makeBinaryCacheBin` (a path, or an absolute path as a string) is a prebuilt
# `make-binary-cache` executable: cargo cannot run inside a Nix build here, so
# `rustPlatform.buildRustPackage` does not compile anything, it copies that
# file to $out/bin/<meta.mainProgram>. Everything else mirrors what nixpkgs
# does with the attributes nix/ passes. Without the argument, a file
# `make-binary-cache` beside this one is used if there is one: that is how
# tests/packaging.rs hands the binary to a copy of the stub used as a flake
# input (flake.nix here), where no argument can be passed.
#
# `system` and `overlays` are nixpkgs' own arguments, for flake.nix at the
# repository root (`import nixpkgs { inherit system; overlays = [ … ]; }`).
{
  makeBinaryCacheBin ? if builtins.pathExists ./make-binary-cache then ./make-binary-cache else null,
  system ? builtins.currentSystem,
  overlays ? [ ],
}:

let
  lib = import ./lib.nix;

  # Like stdenv.mkDerivation, for what nix/ uses: `realBuilder` and `args`
  # choose the builder (else /bin/sh runs `buildCommand`, with the `bin` of
  # each of `nativeBuildInputs` on PATH before the host's /usr/bin and /bin,
  # which stand in for stdenv's coreutils, grep, sed…), `passthru` and
  # `meta` stay out of the derivation, `__structuredAttrs` is passed on, and
  # null attributes are dropped (`__ignoreNulls`, as nixpkgs sets it).
  mkDerivation =
    attrs:
    let
      passthru = attrs.passthru or { };
      meta = attrs.meta or { };
      shellPath = builtins.concatStringsSep ":" (
        map (p: "${p}/bin") (attrs.nativeBuildInputs or [ ])
        ++ [
          "/usr/bin"
          "/bin"
        ]
      );
      drvAttrs =
        removeAttrs attrs [
          "passthru"
          "meta"
        ]
        // {
          inherit system;
          builder = attrs.realBuilder or "/bin/sh";
          args = attrs.args or [
            "-eu"
            "-c"
            attrs.buildCommand
          ];
          __ignoreNulls = true;
        }
        // (if attrs ? realBuilder || attrs ? PATH then { } else { PATH = shellPath; });
      drv = builtins.derivation drvAttrs;
    in
    drv // passthru // { inherit meta passthru; };

  stdenvNoCC = rec {
    inherit mkDerivation system;
    shell = "/bin/sh";
    # One platform: the build machine runs what it builds.
    hostPlatform = {
      inherit system;
      canExecute = platform: platform.system == system;
    };
    buildPlatform = hostPlatform;
  };

  # nixpkgs' installShellFiles, for what nix/package.nix uses: a setup hook
  # with installShellCompletion (files named NAME.bash, NAME.zsh, NAME.fish)
  # and installManPage (section from the file name), installing where
  # nixpkgs' does.
  installShellFiles = mkDerivation {
    name = "install-shell-files";
    buildCommand = ''
      mkdir -p "$out/nix-support"
      cat > "$out/nix-support/setup-hook" <<'EOF'
      installShellCompletion() {
          for file in "$@"; do
              name=''${file##*/}; name=''${name%.*}
              case "$file" in
                  *.bash) dir=share/bash-completion/completions; target=$name.bash ;;
                  *.zsh) dir=share/zsh/site-functions; target=_$name ;;
                  *.fish) dir=share/fish/vendor_completions.d; target=$name.fish ;;
                  *) echo "installShellCompletion: $file: no .bash, .zsh or .fish" >&2; return 1 ;;
              esac
              mkdir -p "$out/$dir" && cp "$file" "$out/$dir/$target"
          done
      }
      installManPage() {
          for page in "$@"; do
              mkdir -p "$out/share/man/man''${page##*.}" && cp "$page" "$out/share/man/man''${page##*.}/"
          done
      }
      EOF
    '';
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
      nativeBuildInputs ? [ ],
      postInstall ? "",
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
      # bash, as in nixpkgs' stdenv: postInstall may use it. Under /usr,
      # which a sandbox given the host's /usr has (tests/nix-versions).
      realBuilder = "/usr/bin/bash";
      args = [
        "-eu"
        "-c"
        ''
          for input in ${toString nativeBuildInputs}; do
            source "$input/nix-support/setup-hook"
          done
          mkdir -p "$out/bin" && cd "$(mktemp -d)"
          cp "$prebuilt" "$out/bin/$mainProgram"
          chmod 0555 "$out/bin/$mainProgram"
          ${postInstall}
        ''
      ];
      inherit meta;
    };

  callPackage =
    fn: args:
    let
      f = if builtins.isFunction fn || fn ? __functor then fn else import fn;
      auto = builtins.intersectAttrs (lib.functionArgs f) pkgs;
    in
    lib.makeOverridable f (auto // args);

  # nixpkgs' `nix`, for builds that run Nix (nix/tests.nix): the host's
  # Nix from Debian's nix-bin, linked, not built. That works here because
  # builds are not sandboxed; it is the one package the stub does not build.
  nix = mkDerivation {
    name = "nix-from-host";
    buildCommand = ''
      if [ ! -x /usr/bin/nix-store ]; then
        echo "nixpkgs-stub: nix links to the host's Nix in /usr/bin (Debian: apt-get install nix-bin), which is not there" >&2
        exit 1
      fi
      mkdir -p "$out/bin"
      for p in /usr/bin/nix /usr/bin/nix-*; do
        ln -s "$p" "$out/bin/"
      done
    '';
    meta.mainProgram = "nix";
  };

  # nixpkgs' `nixfmt`, for the flake's `formatter`: not available here, so
  # building it fails saying so (the flake still evaluates).
  nixfmt = mkDerivation {
    name = "nixfmt-not-in-nixpkgs-stub";
    buildCommand = ''
      echo "nixpkgs-stub: there is no nixfmt in the stand-in for nixpkgs; use real nixpkgs for 'nix fmt'" >&2
      exit 1
    '';
    meta.mainProgram = "nixfmt";
  };

  base = {
    inherit
      lib
      stdenvNoCC
      callPackage
      rustPlatform
      installShellFiles
      nix
      nixfmt
      ;
    stdenv = stdenvNoCC;
  };

  # The overlays applied as nixpkgs applies them: each sees the final
  # package set and the one before it; callPackage fills from the final one.
  pkgs = lib.fix (final: builtins.foldl' (prev: overlay: prev // overlay final prev) base overlays);
in
pkgs
