#!/usr/bin/env python3
"""Builds a benchmark closure in the local Nix store and writes its path-info JSON.

usage: python3 bench/corpus.py SHAPE [--size MB] [--count N] [--closure FILE] [--seed N]
                                       [--changed F --variant V]

Shapes:
  system   many store paths of the sizes a system closure has (most a few KiB to
           a few hundred KiB, some MiBs, a few tens of MiB), referring to each
           other like packages do; --size sets the total (default 600 MB, about
           one store path per MB: 600 MB is ~570 paths, 5000 MB ~4800)
  few-big  a few huge store paths dominating (281, 76, 47, 30, 20 MiB) and a
           tail of small ones, ~583 MB, as a toolchain or firmware makes it
  random   one 100 MiB store path of random bytes and four of 20 MiB of text
  tiny     10,000 store paths of ~3 KiB of text each (--count sets how many)
  many     100,000 small store paths (--count sets how many) referring to each
           other, ~2 KiB of NAR each, imported with `nix-store --import` from a
           stream this script generates (no builds: 100,000 paths in about a
           minute); --changed F --variant V replace a fraction F of the paths
           no other path refers to with new ones (new store paths and
           contents), as a night's rebuild of a mirror would

The contents are files of this machine (shared libraries, Python and Perl
sources, documentation, locales from /usr), so they compress like real store
paths do; which files go where is decided by a seeded random generator, so the
same machine and seed give the same closure as long as /usr does not change
(installing a package changes it; Python's __pycache__ is left out). Each store path is the
output of a derivation whose builder (this script, run by the system's
python3) copies its files in; Nix builds them with `nix-build` as usual, so
they are ordinary valid store paths with references. Needs Nix with the
sandbox off (Debian's nix-bin default), since builders read /usr.

Prints the root store path on stdout; with --closure, also writes
`nix path-info --json --recursive` of it to FILE.
Only the Python standard library is used.
"""
import argparse
import hashlib
import json
import math
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
NIX_ENV = dict(os.environ, NIX_CONFIG="substituters =\nexperimental-features = nix-command\nsandbox = false\n")
MiB = 1 << 20

# Where file contents come from: world-readable trees every Debian-like system
# has (builders run as an unprivileged build user, so /root and $HOME are out).
HOST_ROOTS = ["/usr/lib", "/usr/share", "/usr/include", "/usr/libexec", "/usr/bin", "/usr/sbin"]
TEXT_SUFFIXES = (".py", ".pm", ".pl", ".h", ".hpp", ".c", ".txt", ".html", ".md", ".rst", ".css", ".js",
                 ".xml", ".json", ".sh", ".tcl", ".el", ".scm", ".pod", ".cfg", ".conf", ".ini", ".tex")
# Files larger than this are skipped: no single host file should dominate.
MAX_FILE = 64 * MiB
SHAPES = ("system", "few-big", "random", "tiny", "many")


class Fail(Exception):
    """An error for the user: printed as is, without a traceback."""


def die(msg):
    print(f"corpus.py: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------------------
# Choosing host files


def host_files():
    """Every world-readable regular file and symlink under HOST_ROOTS that a
    build user can read: [(path, size, is_text)], sorted by path."""
    found = []
    for root in HOST_ROOTS:
        if not os.path.isdir(root):
            continue
        for d, dirs, files in os.walk(root):
            # Python writes these as it runs (as root, into /usr): they would
            # make the corpus change from one run to the next.
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            try:
                if os.stat(d).st_mode & 0o005 != 0o005:
                    dirs[:] = []
                    continue
            except OSError:
                continue
            for f in sorted(files):
                p = os.path.join(d, f)
                if "\n" in p or "\t" in p or p.endswith((".pyc", ".pyo")):
                    continue
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    found.append((p, 0, False))
                elif stat.S_ISREG(st.st_mode) and st.st_mode & 0o004 and st.st_size <= MAX_FILE:
                    found.append((p, st.st_size, p.endswith(TEXT_SUFFIXES)))
    if sum(s for _, s, _ in found) < 50 * MiB:
        raise Fail(f"found less than 50 MiB of readable files under {', '.join(HOST_ROOTS)} to build a corpus from")
    return found


class Pool:
    """Host files in size classes, each taken in a seeded random order and
    cycled when used up (a corpus larger than the machine's files repeats
    them, in other store paths)."""

    CLASSES = (64 << 10, MiB, 16 * MiB, MAX_FILE + 1)

    def __init__(self, files, rng):
        self.buckets = [[] for _ in self.CLASSES]
        for f in files:
            self.buckets[next(i for i, limit in enumerate(self.CLASSES) if f[1] < limit)].append(f)
        for b in self.buckets:
            rng.shuffle(b)
        self.cursor = [0] * len(self.buckets)

    def take(self, room):
        """The next file from the largest class that can still fit `room`
        bytes, or from the smallest class."""
        for i in reversed(range(len(self.buckets))):
            b = self.buckets[i]
            if not b:
                continue
            f = b[self.cursor[i] % len(b)]
            if f[1] <= room or i == 0:
                self.cursor[i] += 1
                return f
        raise Fail("no host files to take")

    def fill(self, target):
        """Files adding up to about `target` bytes (at least one)."""
        chosen, total = [], 0
        while total < target or not chosen:
            f = self.take(target - total)
            chosen.append(f)
            total += f[1]
        return chosen, total


def layout(files):
    """[(source, name in the store path)]: the first two directories under
    /usr and the file name (lib/x86_64-linux-gnu/libz.so.1, share/doc/copyright),
    so a store path has a few directories of many files, as packages do;
    a clash is told apart by the parent directory's name, then a number."""
    seen, out = set(), []
    for p in files:
        parent, base = os.path.split(p)
        top = "/".join(os.path.relpath(parent, "/usr").split("/")[:2])
        dest = f"{top}/{base}"
        n = 1
        while dest in seen:
            n += 1
            dest = f"{top}/{os.path.basename(parent)}-{base}" if n == 2 else f"{top}/{n}-{base}"
        seen.add(dest)
        out.append((p, dest))
    return out


def system_sizes(total, rng):
    """Store path sizes as a system closure has them: 60 % small (2-256 KiB),
    37 % medium (256 KiB-4 MiB), 3 % large (4-48 MiB), log-uniform within each
    class, until `total` bytes (mean ~1 MiB a path)."""
    sizes, s = [], 0
    while s < total:
        r = rng.random()
        lo, hi = (2 << 10, 256 << 10) if r < 0.60 else (256 << 10, 4 * MiB) if r < 0.97 else (4 * MiB, 48 * MiB)
        size = int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        size = min(size, total - s) if total - s > 2 << 10 else size
        sizes.append(size)
        s += size
    return sizes


# ---------------------------------------------------------------------------
# The Nix expression


def nix_string(s):
    return json.dumps(s).replace("${", "\\${")


def python_interpreter():
    """A python3 that the unprivileged build user can run."""
    for p in ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"):
        if os.access(p, os.X_OK):
            return p
    exe = os.path.realpath(sys.executable)
    if exe.startswith(("/root", os.path.expanduser("~"))):
        raise Fail(f"no python3 outside the home directory for the build user (only {exe})")
    return exe


def expression(packages, root_name):
    """A Nix expression building one store path per package and a root
    referring to all. `packages`: [{"name", "spec", "deps": [indices]}]; the
    builder is this script in `--build` mode, which reads the spec."""
    lines = [
        "let",
        "  builder = " + nix_string(python_interpreter()) + ";",
        "  script = " + HERE + "/corpus.py;",
        "  pkg = name: spec: deps: derivation {",
        "    inherit name builder spec deps; system = builtins.currentSystem;",
        "    args = [ script \"--build\" ]; passAsFile = [ \"spec\" \"deps\" ];",
        "  };",
    ]
    for i, p in enumerate(packages):
        deps = " ".join(f"p{j}" for j in p["deps"])
        lines.append(f"  p{i} = pkg {nix_string(p['name'])} {nix_string(json.dumps(p['spec']))} [ {deps} ];")
    all_ = " ".join(f"p{i}" for i in range(len(packages)))
    lines.append(f"  root = pkg {nix_string(root_name)} {nix_string(json.dumps({'kind': 'root'}))} [ {all_} ];")
    lines.append("in root")
    return "\n".join(lines) + "\n"


def deps_of(i, rng):
    """Earlier packages a package refers to, like a package set's DAG: its
    predecessor, a few others nearby and a couple of far, popular ones."""
    if i == 0:
        return []
    cands = {i - 1, i // 2, i // 4, max(0, i - rng.randint(2, 12)), rng.randrange(i), rng.randrange(min(i, 8))}
    return sorted(c for c in cands if 0 <= c < i)


def plan(shape, size_mb, count, seed):
    """The packages of a shape: [{"name", "spec", "deps"}]."""
    rng = random.Random(f"{shape}-{seed}")
    if shape == "tiny":
        return None
    files = host_files()
    pool = Pool(files, rng)
    packages = []

    def files_pkg(name, target):
        chosen, _ = pool.fill(target)
        spec = {"kind": "files", "files": [p for p, _, _ in chosen]}
        return {"name": name, "spec": spec, "deps": deps_of(len(packages), rng)}

    if shape == "system":
        for n, size in enumerate(system_sizes(size_mb * 10**6, rng)):
            packages.append(files_pkg(f"sys-{n}", size))
    elif shape == "few-big":
        scale = size_mb / 583
        for n, mib in enumerate([281, 76, 47, 30, 20]):
            packages.append(files_pkg(f"big-{n}", int(mib * MiB * scale)))
        rest = int(583e6 * scale) - sum(int(m * MiB * scale) for m in [281, 76, 47, 30, 20])
        for n, size in enumerate(system_sizes(max(rest, 1), rng)):
            packages.append(files_pkg(f"small-{n}", size))
    elif shape == "random":
        text = [f for f in files if f[2] and f[1] > 0]
        rng.shuffle(text)
        packages.append({"name": "random-100M", "spec": {"kind": "random", "size": 100 * MiB, "seed": seed},
                         "deps": []})
        for n in range(4):
            # Each text path starts at another place of the list of text files.
            start = n * len(text) // 4
            packages.append({"name": f"text-20M-{n}",
                             "spec": {"kind": "text", "size": 20 * MiB,
                                      "files": [p for p, _, _ in text[start:] + text[:start]]},
                             "deps": [0]})
    return packages


def tiny_expression(count):
    """`count` store paths of ~3 KiB of text each (builtins.toFile: no
    build needed) and a root referring to all, listed through a file since
    their names do not fit in one environment variable."""
    return f"""let
  n = {count};
  line = i: j: "tiny store path ${{toString i}}, line ${{toString j}}: the quick brown fox ${{toString (i * 7919 + j)}}\\n";
  tiny = i: builtins.toFile "tiny-${{toString i}}" (builtins.concatStringsSep "" (builtins.genList (line i) 40));
  paths = builtins.genList tiny n;
in derivation {{
  name = "tiny-root"; system = builtins.currentSystem; builder = "/bin/sh";
  paths = builtins.concatStringsSep "" (map (p: p + "\\n") paths); passAsFile = [ "paths" ];
  args = [ "-c" "while read -r p; do echo $p; done < $pathsPath > $out" ];
}}
"""


# ---------------------------------------------------------------------------
# The many shape: a `nix-store --export` stream, generated.

NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"
EXPORT_MAGIC = 0x4558494E


def nix32(digest):
    """Nix's base-32 of a 20-byte digest (the hash part of a store path)."""
    out = []
    for n in range((len(digest) * 8 - 1) // 5, -1, -1):
        b, j = divmod(n * 5, 8)
        c = digest[b] >> j
        if b + 1 < len(digest):
            c |= digest[b + 1] << (8 - j)
        out.append(NIX32[c & 0x1F])
    return "".join(out)


def nar_str(b):
    return len(b).to_bytes(8, "little") + b + b"\0" * (-len(b) % 8)


def nar_node(node):
    """NAR serialisation of a node: bytes (file), ("x", bytes) (executable),
    ("l", target) (symlink) or a dict (directory)."""
    if isinstance(node, dict):
        body = nar_str(b"type") + nar_str(b"directory")
        for name in sorted(node):
            body += (nar_str(b"entry") + nar_str(b"(") + nar_str(b"name") + nar_str(name.encode())
                     + nar_str(b"node") + nar_node(node[name]) + nar_str(b")"))
    elif isinstance(node, tuple) and node[0] == "l":
        body = nar_str(b"type") + nar_str(b"symlink") + nar_str(b"target") + nar_str(node[1].encode())
    elif isinstance(node, tuple):
        body = nar_str(b"type") + nar_str(b"regular") + nar_str(b"executable") + nar_str(b"") \
            + nar_str(b"contents") + nar_str(node[1])
    else:
        body = nar_str(b"type") + nar_str(b"regular") + nar_str(b"contents") + nar_str(node)
    return nar_str(b"(") + body + nar_str(b")")


def many_root(count, seed, changed, variant):
    """The root store path of a many corpus: one per count, seed and change."""
    key = f"many-root:{seed}:{count}:{changed}:{variant if changed else 0}"
    return f"/nix/store/{nix32(hashlib.sha256(key.encode()).digest()[:20])}-many-{count}-root"


def many_stream(count, seed, changed, variant, out):
    """Writes to `out` an export stream of `count` store paths and a root;
    returns the root store path. Path i refers to a few earlier ones (and
    every fifth to itself); the root refers to every path no other refers to.
    With `changed` > 0, that fraction of those (chosen by `variant`) are
    replaced by new store paths."""
    store = "/nix/store"
    rng = random.Random(seed)
    refs = []
    for i in range(count):
        k = rng.choice((0, 0, 1, 1, 2, 3, 5)) if i else 0
        refs.append(sorted({rng.randrange(i) for _ in range(k)}))
    referred = set(r for rs in refs for r in rs)
    tops = [i for i in range(count) if i not in referred]
    pick = random.Random(f"{seed}:{variant}")
    swapped = set(pick.sample(tops, round(changed * count))) if changed else set()
    if len(swapped) > len(tops):
        raise Fail(f"--changed {changed}: only {len(tops)} paths have no referrer")

    def path(i):
        v = variant if i in swapped else 0
        digest = hashlib.sha256(f"many:{seed}:{i}:{v}".encode()).digest()[:20]
        return f"{store}/{nix32(digest)}-many-{i}-1.{v}"

    paths = [path(i) for i in range(count)]
    words = "the quick brown fox jumps over a lazy dog while nix copies closures".split()

    def write_path(p, references, tree):
        out.write((1).to_bytes(8, "little"))
        out.write(nar_str(b"nix-archive-1") + nar_node(tree))
        out.write(EXPORT_MAGIC.to_bytes(8, "little"))
        out.write(nar_str(p.encode()))
        out.write(len(references).to_bytes(8, "little"))
        for r in sorted(references):
            out.write(nar_str(r.encode()))
        out.write(nar_str(b""))  # no deriver
        out.write((0).to_bytes(8, "little"))  # no signature

    for i, p in enumerate(paths):
        r = random.Random(f"{seed}:{i}:{variant if i in swapped else 0}")
        references = [paths[j] for j in refs[i]] + ([p] if i % 5 == 0 else [])
        text = "".join(f"{' '.join(r.choice(words) for _ in range(10))} {i}\n" for _ in range(r.randrange(10, 40)))
        name = p.split("-", 1)[1]
        tree = {"share": {"doc": {name: {"README": text.encode()}}},
                "nix-support": {"propagated-build-inputs": (" ".join(references) + "\n").encode()}}
        if i % 10 == 0:
            tree["bin"] = {name: ("x", f"#!/bin/sh\nexec {p}/share/doc/{name}/README\n".encode())}
        if i % 7 == 0:
            tree["lib"] = ("l", f"{references[0]}/share" if references else "share")
        write_path(p, references, tree)
    root = many_root(count, seed, changed, variant)
    top_paths = [paths[i] for i in tops]
    write_path(root, top_paths, ("".join(t + "\n" for t in top_paths)).encode())
    out.write((0).to_bytes(8, "little"))
    return root


def import_many(count, seed, changed, variant, log):
    """Generates the many corpus and imports it, unless it is there;
    returns the root."""
    root = many_root(count, seed, changed, variant)
    valid = subprocess.run(["nix-store", "--check-validity", root], env=NIX_ENV, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL).returncode == 0
    if valid:
        return root
    print(f"corpus.py: importing {count} store paths into the Nix store…", file=log, flush=True)
    # Nix's database need not be synced per path for a benchmark corpus.
    cmd = ["nix-store", "--import", "--option", "fsync-metadata", "false"]
    p = subprocess.Popen(cmd, env=NIX_ENV, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    import io
    buf = io.BufferedWriter(p.stdin, 1 << 20)
    try:
        root = many_stream(count, seed, changed, variant, buf)
        buf.flush()
    except BrokenPipeError:
        root = None
    p.stdin.close()
    err = p.stderr.read().decode(errors="replace")
    if p.wait() != 0 or root is None:
        raise Fail(f"nix-store --import failed (exit {p.returncode}):\n{err[-3000:]}")
    return root


# ---------------------------------------------------------------------------
# Builder mode: runs inside nix-build, as the build user.


def build():
    out = os.environ["out"]
    spec = json.load(open(os.environ["specPath"]))
    deps = open(os.environ["depsPath"]).read().split()
    kind = spec["kind"]
    if kind == "root":
        with open(out, "w") as f:
            f.write("".join(d + "\n" for d in deps))
        return
    os.mkdir(out)
    support = os.path.join(out, "nix-support")
    os.mkdir(support)
    # References, as a package's propagated inputs record them.
    with open(os.path.join(support, "propagated-build-inputs"), "w") as f:
        f.write(" ".join(deps) + "\n")
    if kind == "files":
        for src, dest in layout(spec["files"]):
            target = os.path.join(out, dest)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.islink(src):
                os.symlink(os.readlink(src), target)
            else:
                try:
                    shutil.copyfile(src, target)
                    os.chmod(target, 0o555 if os.stat(src).st_mode & 0o100 else 0o444)
                except OSError:
                    # Unreadable now (changed since planning): a small stand-in.
                    with open(target, "w") as f:
                        f.write(f"unreadable: {src}\n")
    elif kind == "random":
        rng = random.Random(spec["seed"])
        os.mkdir(os.path.join(out, "share"))
        with open(os.path.join(out, "share", "data.bin"), "wb") as f:
            left = spec["size"]
            while left:
                n = min(left, 4 * MiB)
                f.write(rng.randbytes(n))
                left -= n
    elif kind == "text":
        os.mkdir(os.path.join(out, "share"))
        with open(os.path.join(out, "share", "text.txt"), "wb") as f:
            left = spec["size"]
            while left:
                for src in spec["files"]:
                    try:
                        data = open(src, "rb").read(left)
                    except OSError:
                        continue
                    f.write(data)
                    left -= len(data)
                    if not left:
                        break
    else:
        raise SystemExit(f"unknown package kind {kind}")


# ---------------------------------------------------------------------------


def run(cmd, **kw):
    try:
        p = subprocess.run(cmd, env=NIX_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    except FileNotFoundError:
        raise Fail(f"{cmd[0]} not found: install Nix (Debian: apt-get install nix-bin)")
    if p.returncode != 0:
        raise Fail(f"{' '.join(cmd[:4])} … failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout.strip()


def make(shape, size_mb=None, count=None, seed=1, closure=None, log=sys.stderr, changed=0.0, variant=1):
    """Builds the corpus of `shape` in the Nix store; returns (root store
    path, path-info JSON text or None)."""
    if shape not in SHAPES:
        raise Fail(f"unknown shape {shape!r}: expected one of {', '.join(SHAPES)}")
    if size_mb is None:
        size_mb = 583 if shape == "few-big" else 600
    for tool in ("nix-build", "nix"):
        if not shutil.which(tool):
            raise Fail(f"{tool} not found: install Nix (Debian: apt-get install nix-bin)")
    if count is None:
        count = 100_000 if shape == "many" else 10_000
    if shape == "many":
        root = import_many(count, seed, changed, variant, log)
    else:
        root = build_corpus(shape, size_mb, count, seed, log)
    info = None
    if closure:
        info = run(["nix", "path-info", "--json", "--recursive", root])
        with open(closure, "w") as f:
            f.write(info)
    return root, info


def build_corpus(shape, size_mb, count, seed, log):
    with tempfile.TemporaryDirectory(prefix="mbc-corpus-") as tmp:
        expr = os.path.join(tmp, "corpus.nix")
        if shape == "tiny":
            text = tiny_expression(count)
        else:
            packages = plan(shape, size_mb, count, seed)
            text = expression(packages, f"{shape}-{size_mb}-root" if shape != "random" else "random-root")
        open(expr, "w").write(text)
        print(f"corpus.py: building the {shape} corpus in the Nix store…", file=log, flush=True)
        return run(["nix-build", "--no-out-link", "--max-jobs", str(os.cpu_count() or 1), "--cores", "1", expr])


def main():
    if sys.argv[1:2] == ["--build"]:
        return build()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shape", choices=SHAPES)
    ap.add_argument("--size", type=int, metavar="MB", help="total size (system, few-big): default 600, 583")
    ap.add_argument("--count", type=int, help="store paths of the tiny and many shapes (default 10000, 100000)")
    ap.add_argument("--changed", type=float, default=0.0, metavar="F",
                    help="many: replace this fraction of the paths no other refers to")
    ap.add_argument("--variant", type=int, default=1, help="many: which paths --changed replaces, and how")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--closure", metavar="FILE", help="write the path-info JSON here")
    args = ap.parse_args()
    try:
        root, _ = make(args.shape, args.size, args.count, args.seed, args.closure,
                       changed=args.changed, variant=args.variant)
    except Fail as e:
        die(str(e))
    print(root)


if __name__ == "__main__":
    main()
