# The few `lib` functions that nix/ uses, written to behave like nixpkgs' own
# for the cases exercised here. Not a general replacement.
let
  inherit (builtins)
    isFunction
    isAttrs
    typeOf
    ;

  functionArgs = f: if f ? __functor then f.__functionArgs or (functionArgs (f.__functor f)) else builtins.functionArgs f;

  setFunctionArgs = f: args: {
    __functor = self: f;
    __functionArgs = args;
  };

  isDerivation = x: isAttrs x && x.type or null == "derivation";

  # Like nixpkgs: the result of `f args` gets `override`, which calls `f`
  # again with the arguments updated by an attribute set or a function of
  # the old arguments.
  makeOverridable =
    f:
    let
      go =
        origArgs:
        let
          result = f origArgs;
          overrideWith = newArgs: origArgs // (if isFunction newArgs then newArgs origArgs else newArgs);
          override = newArgs: go (overrideWith newArgs);
        in
        if isAttrs result then
          result // { inherit override; }
        else if isFunction result then
          setFunctionArgs result (functionArgs result) // { inherit override; }
        else
          result;
    in
    setFunctionArgs go (functionArgs f);

  hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;

  # A file set is represented as a list of absolute path strings here.
  fileset = {
    unions = paths: map toString paths;
    toSource =
      { root, fileset }:
      builtins.path {
        name = "source";
        path = root;
        filter =
          path: type:
          builtins.any (
            member: path == member || hasPrefix (member + "/") path || hasPrefix (path + "/") member
          ) fileset;
      };
  };
in
{
  inherit
    functionArgs
    setFunctionArgs
    isDerivation
    makeOverridable
    hasPrefix
    fileset
    ;

  fix = f: let x = f x; in x;

  assertMsg = pred: msg: pred || builtins.throw msg;

  optionalString = cond: s: if cond then s else "";

  concatMapStringsSep = sep: f: list: builtins.concatStringsSep sep (map f list);

  importTOML = path: builtins.fromTOML (builtins.readFile path);

  getExe =
    x:
    "${x}/bin/${
      x.meta.mainProgram or (throw "stub lib.getExe: ${x.name or "?"} has no meta.mainProgram (${typeOf x})")
    }";

  licenses.mit = {
    spdxId = "MIT";
    shortName = "mit";
    fullName = "MIT License";
    free = true;
  };
}
