#!/usr/bin/env python3
"""make-binary-cache on a closure of 100,000 store paths: every subcommand.

usage: python3 bench/scale.py --work DIR [--count 100000] [--changed 0.01]
                              [--shards 8] [--nix-build-count 20000] [--repeat N]

The closures are bench/corpus.py's `many` shape, imported into the local Nix
store from a generated `nix-store --import` stream (about a minute for
100,000 paths; kept for later runs): A, and B, the same with a fraction
(--changed) of its store paths replaced by new ones. Then, one after another
(sync(2) before each, untimed; GNU time reads CPU seconds and peak RSS):

  build      --closure A.json --out a --compression zstd, synced, and with
             --no-sync into another new directory
  floor      the disk floor of a's files (bench.py's: sendfile copies of
             them into a new directory, one syncfs)
  verify     verify a
  ls         ls a, and ls --json a
  gc         gc --keep ROOT(A) a: keeps all, so reads and decides only
  fresh B    B into a new directory (what --reuse saves is measured
             against it)
  reuse      B into a copy of a (cp -a, untimed) with --reuse of itself,
             the README's nightly update in place; and B into a new
             directory with --reuse a
  gc 1 %     gc --keep ROOT(B) on the updated copy: removes A's own paths
  merge      8 shards of A (written with --attrs, untimed) merged, synced
             and --no-sync, against `cp -r` of the same directories into
             one, without and with a sync afterwards
  nix-build  mkBinaryCache (nix/, with tests/nixpkgs-stub) of a closure of
             --nix-build-count paths: the time before our builder starts
             (evaluation, exportReferencesGraph), ours, and after it ends
             (Nix registering the output), from the log lines' arrival

Prints a Markdown table. Needs Nix, cargo and GNU time. The caches stay in
the work directory, which should be new, on a fresh top-level directory:
ext4 without a journal allocates inodes slowly for minutes after mass
deletions nearby (it skips recently deleted ones), so remove the caches of a
run some minutes before the next, not just before it.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import corpus  # noqa: E402
from bench import OURS, GNU_TIME, Fail, describe_machine, disk_floor, measure, median_run, read_cache, sh  # noqa: E402
from corpus import NIX_ENV  # noqa: E402


class Bench:
    def __init__(self, work, repeat):
        self.work, self.repeat, self.rows = work, repeat, []

    def new_dir(self, name):
        """A path in the work directory that does not exist yet."""
        return tempfile.mkdtemp(prefix=name + "-", dir=self.work) + "/out"

    def time(self, label, make_cmd, paths, note="", prepare=None):
        """Runs make_cmd() --repeat times (prepare() untimed before each),
        records the median."""
        runs = []
        for _ in range(self.repeat):
            if prepare:
                prepare()
            runs.append(measure(make_cmd()))
        r = median_run(runs)
        self.record(label, r, paths, note)
        return r

    def record(self, label, r, paths, note=""):
        self.rows.append((label, r, paths, note))
        rate = f"{paths / r.wall:,.0f}" if paths and r.wall else "—"
        print(f"scale: {label}: {r.wall:.2f} s, {rate} paths/s, {r.rss:.0f} MB {note}", file=sys.stderr, flush=True)


def closure_file(work, shape_args, name):
    root, info = corpus.make("many", closure=os.path.join(work, name + ".json"), **shape_args)
    return root, os.path.join(work, name + ".json"), len(json.loads(info))


def shard_attrs(closure_json, shard, shards, path):
    closure = json.load(open(closure_json))
    with open(path, "w") as f:
        json.dump({"closure": closure, "shard": shard, "shards": shards}, f)
    return path


def nix_build_split(work, root, count):
    """mkBinaryCache through nix-build: seconds before our builder starts,
    ours, after it ends; and the wall time in all."""
    expr = os.path.join(work, "scale.nix")
    with open(expr, "w") as f:
        f.write(f"""let
  pkgs = import {REPO}/tests/nixpkgs-stub {{ makeBinaryCacheBin = {OURS}; }};
  mkBinaryCache = pkgs.callPackage {REPO}/nix {{ }};
in {{ nonce ? "{time.time_ns()}" }}: mkBinaryCache {{ rootPaths = [ (builtins.storePath "{root}") ]; name = "scale-${{nonce}}"; }}
""")
    # Evaluation alone (another name, so another derivation), for the split.
    os.sync()
    start = time.monotonic()
    sh("nix-instantiate", expr, "--argstr", "nonce", "eval")
    evaluation = time.monotonic() - start
    os.sync()
    start = time.monotonic()
    proc = subprocess.Popen(["nix-build", "--no-out-link", expr], env=NIX_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    marks = {}
    for line in proc.stderr:
        now = time.monotonic() - start
        if line.startswith("building '"):
            marks.setdefault("building", now)
        elif "make-binary-cache: writing" in line:
            marks.setdefault("ours", now)
        elif "make-binary-cache: done" in line:
            marks.setdefault("done", now)
            # Our own clock: the lines reach us only as fast as Nix passes them on.
            marks["ours_s"] = float(line.rsplit(" in ", 1)[1].split(" s ", 1)[0])
    out = proc.stdout.read().strip()
    if proc.wait() != 0 or len(marks) != 4:
        raise Fail(f"nix-build of mkBinaryCache failed or logged otherwise (saw {marks})")
    total = time.monotonic() - start
    references = len(sh("nix-store", "--query", "--references", out).split())
    marks["evaluation"] = evaluation
    return marks, total, out, references


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="a directory for the caches (made if missing)")
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--changed", type=float, default=0.01)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--nix-build-count", type=int, default=20_000, help="0 skips the nix-build row")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each, reporting the median")
    args = ap.parse_args()
    for tool in ("nix-build", "nix-store", "cargo", GNU_TIME):
        if not shutil.which(tool):
            sys.exit(f"scale.py: {tool} not found")
    try:
        print("scale: building the release binary…", file=sys.stderr, flush=True)
        if subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO).returncode != 0:
            sys.exit("scale.py: cargo build --release failed")
        os.makedirs(args.work, exist_ok=True)
        work = tempfile.mkdtemp(prefix="mbc-scale-", dir=args.work)
        machine = describe_machine(work)
        print(machine, file=sys.stderr)
        started = time.monotonic()
        n = args.count
        root_a, a_json, paths = closure_file(work, {"count": n}, "a")
        root_b, b_json, _ = closure_file(work, {"count": n, "changed": args.changed, "variant": 1}, "b")
        b = Bench(work, args.repeat)
        ours = [OURS]

        fresh = []

        def into_new(name, extra, closure=a_json):
            def cmd():
                fresh.append(b.new_dir(name))
                return ours + ["--closure", closure, "--out", fresh[-1], "--compression", "zstd"] + extra
            return cmd

        b.time("build --closure, zstd", into_new("a", []), paths)
        a = fresh[-1]
        b.time("build --closure, zstd, --no-sync", into_new("a-nosync", ["--no-sync"]), paths)
        b.record("disk floor (a's files: sendfile, one syncfs)", disk_floor(a, b.new_dir("floor")), paths)
        b.time("verify", lambda: ours + ["verify", a], paths)
        b.time("ls", lambda: ours + ["ls", a], paths)
        b.time("ls --json", lambda: ours + ["ls", "--json", a], paths)
        b.time("gc, keeping everything", lambda: ours + ["gc", "--keep", root_a, a], paths)

        fresh_b = b.time("build of B (1 % changed) into a new directory", into_new("b", [], b_json), paths)
        # Every copy goes to a new directory, and nothing is deleted until
        # the end: ext4 without a journal allocates inodes slowly for minutes
        # after mass deletions (it skips recently deleted ones), which would
        # slow every row after.
        copies = []

        def fresh_copy():
            copies.append(b.new_dir("nightly"))
            subprocess.run(["cp", "-a", a, copies[-1]], check=True)

        r = b.time("B with --reuse, in place (--out a' --reuse a')",
                   lambda: ours + ["--closure", b_json, "--out", copies[-1], "--compression", "zstd",
                                   "--reuse", copies[-1]], paths, prepare=fresh_copy)
        b.rows[-1] = b.rows[-1][:3] + (f"{r.wall / fresh_b.wall:.1%} of the fresh build",)
        r = b.time("B with --reuse a, into a new directory", into_new("b-reuse", ["--reuse", a], b_json), paths)
        b.rows[-1] = b.rows[-1][:3] + (f"{r.wall / fresh_b.wall:.1%} of the fresh build",)
        b.time("gc --keep B on the updated copy (removes A's 1 %)",
               lambda: ours + ["gc", "--keep", root_b, copies[-1]], paths)

        shards = []
        for k in range(args.shards):
            attrs = shard_attrs(a_json, k, args.shards, os.path.join(work, f"shard-{k}.json"))
            shards.append(b.new_dir(f"shard-{k}"))
            sh(OURS, "--attrs", attrs, "--out", shards[-1], "--no-sync")
        m = b.time(f"merge of {args.shards} shards", lambda: ours + ["merge", "--out", b.new_dir("merged")] + shards,
                   paths)
        m_nosync = b.time(f"merge of {args.shards} shards, --no-sync",
                          lambda: ours + ["merge", "--no-sync", "--out", b.new_dir("merged")] + shards, paths)
        def cp_into_new():
            dest = b.new_dir("cp")
            os.makedirs(dest)
            return [s + "/." for s in shards] + [dest]

        cp = b.time("cp -r of the same shards into one directory", lambda: ["cp", "-r"] + cp_into_new(), paths)
        cp_sync = b.time("cp -r of the same shards, then sync",
                         lambda: ["sh", "-c", 'cp -r "$@" && sync', "cp"] + cp_into_new(), paths)
        b.rows[-4] = b.rows[-4][:3] + (f"{m.wall / cp_sync.wall:.2f}× cp -r + sync",)
        b.rows[-3] = b.rows[-3][:3] + (f"{m_nosync.wall / cp.wall:.2f}× cp -r",)

        if args.nix_build_count:
            root_c, _, c_paths = closure_file(work, {"count": args.nix_build_count, "seed": 2}, "c")
            marks, total, out, refs = nix_build_split(work, root_c, c_paths)
            nix_build = (c_paths, marks, total, refs)
        else:
            nix_build = None
        read_cache(a, json.load(open(a_json)))
    except Fail as e:
        sys.exit(f"scale.py: {e}")

    print(f"\n```\n{machine}\n```\n")
    print(f"Closure A: {paths} store paths (bench/corpus.py many --count {n}), "
          f"{sum(e['narSize'] for e in json.load(open(a_json))) / 1e6:.1f} MB of NAR; "
          f"B: the same with {args.changed:.0%} of the paths no other refers to replaced. "
          f"{'One run each' if args.repeat == 1 else f'Median of {args.repeat} runs'}; "
          f"total {time.monotonic() - started:.0f} s, load average {os.getloadavg()[0]:.2f} at the end.\n")
    print("| step | s | store paths/s | CPU user+sys s | peak RSS MB | note |")
    print("|---|---:|---:|---:|---:|---|")
    for label, r, p, note in b.rows:
        print(f"| {label} | {r.wall:.2f} | {p / r.wall:,.0f} | {r.user:.2f}+{r.sys:.2f} | {r.rss:.0f} | {note} |")
    if nix_build:
        c_paths, marks, total, refs = nix_build
        ours_s = marks["ours_s"]
        print(f"\nmkBinaryCache through nix-build, {c_paths} store paths: {total:.2f} s in all, of which "
              f"**{ours_s:.2f} s our builder** (its own clock: from reading the structured attributes to its "
              f"last file) and {total - ours_s:.2f} s Nix: evaluation and instantiation "
              f"(`nix-instantiate` alone: {marks['evaluation']:.2f} s); {marks['ours']:.2f} s until our first "
              f"log line reached us (exportReferencesGraph and the structured attributes for {c_paths} paths, "
              f"before our builder starts); {total - marks['done']:.2f} s after our last one (Nix registering "
              f"the output: hashing it and scanning it for references, {refs} found); the rest is Nix passing "
              f"on our {c_paths} log lines.")


if __name__ == "__main__":
    main()
