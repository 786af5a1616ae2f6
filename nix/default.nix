# mkBinaryCache: build a flat-file binary cache (the layout `nix copy --to
# file:///…` writes) holding the closure of `rootPaths`.
#
#   mkBinaryCache { rootPaths = [ hello ]; }
#   (mkBinaryCache { rootPaths = [ hello ]; }).override { compression = "xz"; }
#
# The result can be used as a substituter:
#   nix-build … --option substituters file://$result --option require-sigs false
#
# It is never signed here: a secret key in the store is readable by every
# user. Sign a copy after the build instead:
#   make-binary-cache sign --secret-key-file KEY --out ./signed $result
#
# The builder is the `make-binary-cache` program itself: there is no shell, no
# Nix and no Python inside the build. It reads the structured attributes
# (`closure` from exportReferencesGraph, `compression`, `compressionLevel`,
# `maxMemory`, `priority`, `wantMassQuery`, `writeNarListing`, `indexDebugInfo`,
# `reuse`)
# from $NIX_ATTRS_JSON_FILE and writes the cache into the `out` output.
#
# With `shards = N` (N > 1) there are N such derivations, each also given
# `shard` (0 … N-1) and `shards`: each sees the whole closure and writes only
# its part (the same partition in every shard, balanced by NAR size), so
# `--max-jobs`, remote builders (`--builders`) and Hydra spread them. The
# result is then mergeBinaryCaches (./merge.nix) of the shards: byte for byte
# the cache one derivation writes.
{
  lib,
  stdenvNoCC,
  callPackage,
  make-binary-cache ? callPackage ./package.nix { },
}:

let
  mergeBinaryCaches = import ./merge.nix { inherit lib stdenvNoCC callPackage make-binary-cache; };

  compressions = [
    "none"
    "xz"
    "zstd"
  ];

  showList = xs: lib.concatMapStringsSep ", " (x: ''"${x}"'') xs;

  # How an unexpected argument value is shown in an error message.
  describe = v: if builtins.isString v then ''"${v}"'' else "of type ${builtins.typeOf v}";

  isRootPath = p: lib.isDerivation p || builtins.isString p || builtins.isPath p;

  # A store path given as a plain string has no context, so Nix would not
  # put it in the build's input closure ("not in the input closure"):
  # builtins.storePath gives it one (not allowed in pure evaluation, where
  # a derivation is what one has anyway). Everything else is as given.
  toRootPath =
    p:
    if builtins.isString p && !(builtins.hasContext p) && lib.hasPrefix "${builtins.storeDir}/" p then
      builtins.storePath p
    else
      p;

  mkBinaryCache =
    {
      # Derivations or store paths whose closure goes into the cache.
      rootPaths,
      # Name of the derivation (and of the cache's store path).
      name ? "binary-cache",
      # How the NAR files are compressed: one of "none", "xz", "zstd".
      compression ? "zstd",
      # Compression level (an integer), or null for the compressor's default.
      compressionLevel ? null,
      # Memory the compressors may use together: null (half of what the
      # build's cgroup or the machine has available), a positive integer of
      # bytes, or a size string such as "512M", "1G" or "1.5GiB" (units K, M,
      # G, T, powers of 1024). Fewer workers or threads run to stay within it.
      maxMemory ? null,
      # nix-cache-info's `Priority` (an integer; Nix tries substituters with
      # lower priorities first, cache.nixos.org has 40), or null for none.
      priority ? null,
      # nix-cache-info's `WantMassQuery` (a bool: whether Nix may query the
      # cache for many paths at once), or null for none.
      wantMassQuery ? null,
      # Also write `<hash>.ls`, the JSON listing of each NAR, as
      # `nix copy --to 'file://…?write-nar-listing=true'` does.
      writeNarListing ? false,
      # Also write `debuginfo/<build id>.debug` for the NARs'
      # `lib/debug/.build-id` files, as `index-debug-info=true` does.
      indexDebugInfo ? false,
      # Split the work among this many derivations (a positive integer), each
      # writing part of the closure, joined by one more: for closures too
      # large for one builder (see the README, "Very large closures").
      shards ? 1,
      # Earlier caches of ours (derivations or store paths, e.g. last night's
      # result) whose compressed NARs are copied where their
      # make-binary-cache.json matches these settings, instead of compressing
      # again. The result is byte-identical to a build without them.
      reuse ? [ ],
    }:

    assert lib.assertMsg (builtins.isList rootPaths)
      "mkBinaryCache: rootPaths must be a list of derivations or store paths, but it is ${describe rootPaths}";
    assert lib.assertMsg (builtins.all isRootPath rootPaths)
      "mkBinaryCache: every element of rootPaths must be a derivation or a store path";
    assert lib.assertMsg (builtins.isString name)
      "mkBinaryCache: name must be a string, but it is ${describe name}";
    assert lib.assertMsg (builtins.isString compression && builtins.elem compression compressions)
      "mkBinaryCache: compression must be one of ${showList compressions}, but it is ${describe compression}";
    assert lib.assertMsg (compressionLevel == null || builtins.isInt compressionLevel)
      "mkBinaryCache: compressionLevel must be null or an integer, but it is ${describe compressionLevel}";
    assert lib.assertMsg (
      maxMemory == null
      || (builtins.isInt maxMemory && maxMemory > 0)
      || (builtins.isString maxMemory && builtins.match "[0-9]+(\\.[0-9]+)?([KkMGT](B|iB)?|B)?" maxMemory != null)
    ) "mkBinaryCache: maxMemory must be null, a positive integer of bytes or a size such as \"512M\" or \"1.5GiB\", but it is ${describe maxMemory}";

    assert lib.assertMsg (priority == null || builtins.isInt priority)
      "mkBinaryCache: priority must be null or an integer, but it is ${describe priority}";
    assert lib.assertMsg (wantMassQuery == null || builtins.isBool wantMassQuery)
      "mkBinaryCache: wantMassQuery must be null or a bool, but it is ${describe wantMassQuery}";
    assert lib.assertMsg (builtins.isBool writeNarListing)
      "mkBinaryCache: writeNarListing must be a bool, but it is ${describe writeNarListing}";
    assert lib.assertMsg (builtins.isBool indexDebugInfo)
      "mkBinaryCache: indexDebugInfo must be a bool, but it is ${describe indexDebugInfo}";
    assert lib.assertMsg (builtins.isInt shards && shards >= 1)
      "mkBinaryCache: shards must be a positive integer, but it is ${
        if builtins.isInt shards then toString shards else describe shards
      }";
    assert lib.assertMsg (builtins.isList reuse)
      "mkBinaryCache: reuse must be a list of earlier caches (derivations or store paths), but it is ${describe reuse}";
    assert lib.assertMsg (builtins.all isRootPath reuse)
      "mkBinaryCache: every element of reuse must be an earlier cache: a derivation or a store path";

    let
      attrs = {
        inherit
          name
          compression
          compressionLevel
          maxMemory
          priority
          wantMassQuery
          writeNarListing
          indexDebugInfo
          reuse
          ;

        __structuredAttrs = true;
        exportReferencesGraph.closure = map toRootPath rootPaths;

        # Our program is the whole builder: it reads the attributes from
        # $NIX_ATTRS_JSON_FILE and needs no arguments.
        realBuilder = lib.getExe make-binary-cache;
        args = [ ];

        # Copying store paths around is cheaper than fetching the result.
        preferLocalBuild = true;
        allowSubstitutes = false;

        passthru = {
          inherit rootPaths make-binary-cache;
          tests.substitutes = callPackage ./tests.nix { mkBinaryCache = lib.makeOverridable mkBinaryCache; };
        };

        meta = {
          description = "Flat-file Nix binary cache holding the closure of the given root paths";
          license = lib.licenses.mit;
        };
      };

      # Shard `i` (counting from 0) of `shards`: the same closure and
      # settings, and its number; it writes only its part of the closure.
      shard =
        i:
        stdenvNoCC.mkDerivation (
          attrs
          // {
            name = "${name}-shard-${toString i}-of-${toString shards}";
            shard = i;
            inherit shards;
            # Each shard may go to another machine; the merge, which only
            # copies, stays local.
            preferLocalBuild = false;
          }
        );
    in
    if shards == 1 then
      stdenvNoCC.mkDerivation attrs
    else
      mergeBinaryCaches {
        inherit name;
        caches = builtins.genList shard shards;
        inherit (attrs) passthru;
      };
in
lib.makeOverridable mkBinaryCache
