# mergeBinaryCaches: join flat-file binary caches (those mkBinaryCache
# builds, or any others) into one, the cache of all their store paths.
#
#   mergeBinaryCaches { caches = [ cacheA cacheB ]; }
#
# mkBinaryCache { shards = N; } uses it to join its N shards; the result is
# then byte for byte the cache one derivation would have written.
#
# The builder is `make-binary-cache merge --no-sync --out $out CACHE…`: it
# checks every narinfo and every NAR file (FileSize, FileHash) as it copies
# them, and fails, naming the store path and both caches, when a store path
# is in two caches with different NARs, references or content addresses, or
# when the merged cache would not be closed (a reference that no cache has);
# narinfos of one NAR that differ otherwise (signatures, Deriver,
# compression) are joined. `nix-cache-info` must agree; the manifest `make-binary-cache.json`
# is kept only when every cache has the same one.
{
  lib,
  stdenvNoCC,
  callPackage,
  make-binary-cache ? callPackage ./package.nix { },
}:

let
  # How an unexpected argument value is shown in an error message.
  describe = v: if builtins.isString v then ''"${v}"'' else "of type ${builtins.typeOf v}";

  isCache = c: lib.isDerivation c || builtins.isString c || builtins.isPath c;

  mergeBinaryCaches =
    {
      # The caches to join: derivations or store paths of flat-file binary
      # caches, at least one.
      caches,
      # Name of the derivation (and of the merged cache's store path).
      name ? "merged-binary-cache",
      # Attributes for the result's passthru (mkBinaryCache passes its own).
      passthru ? { },
    }:

    assert lib.assertMsg (builtins.isList caches)
      "mergeBinaryCaches: caches must be a list of binary caches (derivations or store paths), but it is ${describe caches}";
    assert lib.assertMsg (caches != [ ]) "mergeBinaryCaches: caches must not be empty: there is nothing to merge";
    assert lib.assertMsg (builtins.all isCache caches)
      "mergeBinaryCaches: every element of caches must be a derivation or a store path";
    assert lib.assertMsg (builtins.isString name)
      "mergeBinaryCaches: name must be a string, but it is ${describe name}";
    assert lib.assertMsg (builtins.isAttrs passthru)
      "mergeBinaryCaches: passthru must be an attribute set, but it is ${describe passthru}";

    stdenvNoCC.mkDerivation {
      inherit name;

      # Our program is the whole builder; the caches are its arguments (and
      # so the derivation's inputs), the output its --out. --no-sync: the
      # output is a store path only once Nix registers it, and whether it is
      # on disk first is Nix's setting, as for mkBinaryCache's builder (see
      # "Durability" in src/cache.rs).
      realBuilder = lib.getExe make-binary-cache;
      args = [
        "merge"
        "--no-sync"
        "--out"
        (builtins.placeholder "out")
      ]
      ++ map (cache: "${cache}") caches;

      # Copying is cheaper than fetching the result, and than sending the
      # caches to another machine.
      preferLocalBuild = true;
      allowSubstitutes = false;

      passthru = {
        inherit caches make-binary-cache;
      }
      // passthru;

      meta = {
        description = "Flat-file Nix binary cache joining the given binary caches";
        license = lib.licenses.mit;
      };
    };
in
lib.makeOverridable mergeBinaryCaches
