#!/usr/bin/env python3
"""Times make-binary-cache against `nix copy --to file://` on the same closure.

usage: python3 bench/bench.py [SIZE_MB] [--compressions none,xz,zstd]
                              [--small-paths N] [--shared DIR] [--jobs N]

Builds the corpus of ../shared/bench/gen_corpus.py (SIZE_MB, default 400) in
the local Nix store, then for each compression times our builder (release
build, fed by `nix path-info --json --recursive`, whose time is counted) and
`nix copy --to file://DIR?compression=C`, checks that both caches hold a
narinfo and a NAR file of the announced size for every store path with the
same NarHash, and prints a Markdown table. With --small-paths N it also times
a closure of N tiny store paths (paths/s). Needs nix (2.8+) and cargo.
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NIX_ENV = dict(os.environ, NIX_CONFIG="substituters =\nexperimental-features = nix-command\n")


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, env=NIX_ENV, text=True, **kw).stdout.strip()


def measure(cmd):
    """Runs cmd; returns (wall seconds, CPU seconds, peak RSS in MB of its largest process)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=NIX_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{stderr.decode(errors='replace')[-3000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def read_cache(cache_dir, closure):
    """{store path: NarHash} of a cache, after checking it is complete."""
    hashes = {}
    for entry in closure:
        path = entry["path"]
        narinfo = os.path.join(cache_dir, path.split("/")[-1][:32] + ".narinfo")
        fields = dict(line.split(": ", 1) for line in open(narinfo).read().splitlines() if ": " in line)
        nar = os.path.join(cache_dir, fields["URL"])
        if os.path.getsize(nar) != int(fields["FileSize"]):
            sys.exit(f"{cache_dir}: {nar} is not {fields['FileSize']} bytes")
        if fields["StorePath"] != path or int(fields["NarSize"]) != entry["narSize"]:
            sys.exit(f"{narinfo}: wrong StorePath or NarSize")
        hashes[path] = fields["NarHash"]
    return hashes


def dir_size(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def small_paths_expr(n):
    files = " ".join(f'(builtins.toFile "small-{i}" "tiny store path number {i}\\n")' for i in range(n))
    return (f'derivation {{ name = "small-paths-root"; system = builtins.currentSystem; builder = "/bin/sh";'
            f' paths = [ {files} ]; args = [ "-c" "echo $paths > $out" ]; }}')


def run(root, work, compressions, jobs, label):
    closure_file = os.path.join(work, "closure.json")
    t0 = time.monotonic()
    with open(closure_file, "w") as f:
        f.write(sh("nix", "path-info", "--json", "--recursive", root))
    path_info_s = time.monotonic() - t0
    closure = json.load(open(closure_file))
    nar_mb = sum(e["narSize"] for e in closure) / 1e6
    ours_bin = os.path.join(REPO, "target/release/make-binary-cache")
    jobs_args = ["--jobs", str(jobs)] if jobs else []
    # Warm the page cache so neither tool pays for the first read. Nothing is
    # deleted until all runs are done: for a while after a mass deletion ext4
    # makes every file creation slow, which would favour whichever tool runs
    # later.
    warm = os.path.join(work, "warm")
    measure([ours_bin, "--closure", closure_file, "--out", warm, "--compression", "none"] + jobs_args)
    rows, outputs = [], [warm]
    for c in compressions:
        ours_dir, nix_dir = os.path.join(work, f"ours-{c}"), os.path.join(work, f"nix-{c}")
        ours_s, ours_cpu, ours_rss = measure(
            [ours_bin, "--closure", closure_file, "--out", ours_dir, "--compression", c] + jobs_args)
        ours_s += path_info_s
        nix_s, nix_cpu, nix_rss = measure(["nix", "copy", "--to", f"file://{nix_dir}?compression={c}", root])
        if read_cache(ours_dir, closure) != read_cache(nix_dir, closure):
            sys.exit(f"{c}: the caches disagree on NarHash")
        ours_mb, nix_mb = dir_size(ours_dir) / 1e6, dir_size(nix_dir) / 1e6
        rows.append((c, "make-binary-cache", ours_s, ours_cpu, nar_mb / ours_s, ours_mb, ours_rss,
                     f"**{ours_s / nix_s:.2f}**", f"{len(closure) / ours_s:.0f}"))
        rows.append((c, "nix copy", nix_s, nix_cpu, nar_mb / nix_s, nix_mb, nix_rss, "1", f"{len(closure) / nix_s:.0f}"))
        outputs += [ours_dir, nix_dir]
    print(f"\n{label}: {len(closure)} store paths, {nar_mb:.1f} MB of NAR "
          f"(path-info query {path_info_s:.2f} s, counted in ours)\n")
    print("| compression | tool | seconds | CPU seconds | MB/s (NAR) | output MB | peak RSS MB "
          "| time ours / nix copy | paths/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for c, tool, s, cpu, mbps, out_mb, rss, ratio, pps in rows:
        print(f"| {c} | {tool} | {s:.2f} | {cpu:.2f} | {mbps:.1f} | {out_mb:.1f} | {rss:.0f} | {ratio} | {pps} |")
    sys.stdout.flush()
    for d in outputs:
        shutil.rmtree(d)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("size_mb", nargs="?", type=int, default=400)
    ap.add_argument("--compressions", default="none,xz,zstd")
    ap.add_argument("--small-paths", type=int, default=0, metavar="N")
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    ap.add_argument("--jobs", type=int, default=0, help="our --jobs (default: all cores)")
    args = ap.parse_args()
    compressions = args.compressions.split(",")

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    print(f"make-binary-cache {sh(os.path.join(REPO, 'target/release/make-binary-cache'), '--version').split()[-1]}, "
          f"{sh('nix', '--version')}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="mbc-bench-") as work:
        if args.size_mb > 0:
            expr = os.path.join(work, "corpus.nix")
            subprocess.run([sys.executable, os.path.join(args.shared, "bench/gen_corpus.py"), str(args.size_mb), expr],
                           check=True)
            root = sh("nix-build", "--no-out-link", expr)
            run(root, work, compressions, args.jobs, f"gen_corpus.py {args.size_mb}")
        if args.small_paths:
            expr = os.path.join(work, "small.nix")
            open(expr, "w").write(small_paths_expr(args.small_paths))
            root = sh("nix-build", "--no-out-link", expr)
            run(root, work, compressions, args.jobs, f"{args.small_paths} tiny store paths")


if __name__ == "__main__":
    main()
