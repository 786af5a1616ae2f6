# nix-build -A make-binary-cache
# nix-build -E 'with import ./. { }; mkBinaryCache { rootPaths = [ make-binary-cache ]; }'
# nix-build -E 'with import ./. { }; mergeBinaryCaches { caches = [ ./cache-a ./cache-b ]; }'
{
  pkgs ? import <nixpkgs> { },
}:

let
  make-binary-cache = pkgs.callPackage ./nix/package.nix { };
in
{
  inherit make-binary-cache;
  mkBinaryCache = pkgs.callPackage ./nix { inherit make-binary-cache; };
  mergeBinaryCaches = pkgs.callPackage ./nix/merge.nix { inherit make-binary-cache; };
}
