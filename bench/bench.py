#!/usr/bin/env python3
"""Times make-binary-cache against `nix copy --to file://` on the same closures.

usage: python3 bench/bench.py [--shapes system,few-big,random,tiny]
                              [--compressions none,zstd,xz] [--sizes MB,...]
                              [--few-big-sizes MB,...]
                              [--jobs N] [--repeat N] [--no-limit] [--work DIR]

For each corpus shape (see bench/corpus.py; --sizes sets the system shape's
total size, several sizes give a scaling curve, --few-big-sizes the few-big
shape's, whose largest path stays 48 % of it) it builds the closure in the
local Nix store, then for each compression runs, back to back:

  ours      target/release/make-binary-cache --closure C --out D --compression X
            (the `nix path-info --json --recursive` that makes C is timed too
            and counted in ours)
  no-sync   the same with --no-sync (none and zstd): what waiting for the
            disk costs, which nix copy never does
  nix copy  nix copy --to 'file://D?compression=X' ROOT
  limit     the compressor alone on the whole closure's NAR concatenated into
            one file in the page cache: zstd -T<cores> -3, xz -T<cores> -6
  floor     the disk alone: every file of the cache ours just wrote (in the
            page cache) copied into a new directory on the same file system
            with sendfile, then one syncfs; the least it takes to create
            these files and put them on disk, which ours (synced) must also
            do

checks that both caches hold every store path with the same NarHash and NAR
files of the announced size, and prints a Markdown table: wall seconds, the
ratio ours / nix copy, ours / limit, ours / max(limit, floor) (both limits
can be reached at once, as compressing and writing overlap, so the larger
is what is left to win against), CPU utilisation ((user+sys)/wall, in
cores), peak RSS (wait4's ru_maxrss), output size against nix copy's and
store paths per second. Before each measured command the bench calls
sync(2), untimed: a syncfs waits for everything dirty on the file system,
and no command should wait for what the one before it left. CPU seconds
and peak RSS are each command's wait4 rusage, read by GNU time
(/usr/bin/time); besides it, Python 3, Nix, cargo, zstd and xz are needed.
Builds the release binary first. Wall times on a shared machine drift; the ratios of rows run back to back hold
better, and --repeat N reports the median of N runs.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import corpus  # noqa: E402  (bench/corpus.py)
from corpus import NIX_ENV, Fail  # noqa: E402

OURS = os.path.join(REPO, "target/release/make-binary-cache")
LIMIT_LEVEL = {"zstd": 3, "xz": 6}


def cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Run:
    """One measured process: wall, user and system seconds, peak RSS in MB."""

    def __init__(self, wall, user, sys_, rss_mb):
        self.wall, self.user, self.sys, self.rss = wall, user, sys_, rss_mb

    @property
    def cpu(self):
        return self.user + self.sys

    @property
    def util(self):
        return self.cpu / self.wall if self.wall else 0.0


# GNU time runs each measured command: a process's peak RSS (ru_maxrss)
# starts at the high-water mark of the process that exec'd it, so measured
# straight from this Python process, whose RSS holds the closure, every tool
# would seem to take at least as much as the bench itself.
GNU_TIME = "/usr/bin/time"


def measure(cmd, stdout=None):
    """Runs cmd under GNU time (which reads the command's wait4 rusage),
    after putting on disk what earlier commands left in the page cache."""
    os.sync()
    with tempfile.NamedTemporaryFile("r", prefix="mbc-bench-time-") as stats:
        start = time.monotonic()
        wrapped = [GNU_TIME, "-f", "%U %S %M", "-o", stats.name, "--"] + cmd
        try:
            proc = subprocess.Popen(wrapped, env=NIX_ENV, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise Fail(f"{GNU_TIME} not found")
        stderr = proc.stderr.read()
        status = proc.wait()
        wall = time.monotonic() - start
        if status != 0:
            raise Fail(f"failed: {' '.join(cmd)}\n{stderr.decode(errors='replace')[-3000:]}")
        user, sys_, rss_kb = stats.read().split()[-3:]
    return Run(wall, float(user), float(sys_), int(rss_kb) / 1024)


def median_run(runs):
    runs = sorted(runs, key=lambda r: r.wall)
    return runs[len(runs) // 2]


def sh(*cmd):
    try:
        p = subprocess.run(cmd, env=NIX_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise Fail(f"{cmd[0]} not found")
    if p.returncode != 0:
        raise Fail(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return p.stdout.strip()


def read_cache(cache_dir, closure):
    """{store path: NarHash} of a cache, after checking it is complete."""
    hashes = {}
    for entry in closure:
        path = entry["path"]
        narinfo = os.path.join(cache_dir, path.split("/")[-1][:32] + ".narinfo")
        try:
            fields = dict(line.split(": ", 1) for line in open(narinfo).read().splitlines() if ": " in line)
        except OSError as e:
            raise Fail(f"{cache_dir}: no narinfo for {path}: {e}")
        nar = os.path.join(cache_dir, fields["URL"])
        if os.path.getsize(nar) != int(fields["FileSize"]):
            raise Fail(f"{cache_dir}: {nar} is not {fields['FileSize']} bytes")
        if fields["StorePath"] != path or int(fields["NarSize"]) != entry["narSize"]:
            raise Fail(f"{narinfo}: wrong StorePath or NarSize")
        hashes[path] = fields["NarHash"]
    return hashes


def dir_size(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def describe_machine(work):
    def first_line(cmd):
        try:
            return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.split("\n")[0]
        except OSError:
            return "?"

    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = "?"
    try:
        kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    fs = "?"
    try:
        mounts = [line.split() for line in open("/proc/mounts")]
        real = os.path.realpath(work)
        best = max((m for m in mounts if real == m[1] or real.startswith(m[1].rstrip("/") + "/")),
                   key=lambda m: len(m[1]))
        fs = f"{best[2]} on {best[0]}"
    except (OSError, ValueError):
        pass
    commit = first_line(["git", "-C", REPO, "describe", "--always", "--dirty"])
    return (f"make-binary-cache {sh(OURS, '--version').split()[-1]} ({commit}), {sh('nix', '--version')}, "
            f"{first_line(['zstd', '--version'])}, {first_line(['xz', '--version'])}\n"
            f"{cpu}, {cores()} cores available, {mem} RAM, Linux {platform.release()}, work directory: {fs}, "
            f"load average {os.getloadavg()[0]:.2f} at start")


def concatenated_nar(closure, path, jobs, work):
    """Every store path's NAR in one file, for the compressor-alone runs.
    Our own uncompressed cache has them as its NAR files (byte-identical to
    `nix-store --dump`, which the tests check), and writing it first puts
    the store paths in the page cache for every tool measured after; the
    file is then read once more to be in the page cache too."""
    warm = os.path.join(work, "warm")
    closure_file = os.path.join(work, "closure.json")
    measure([OURS, "--closure", closure_file, "--out", warm, "--compression", "none", "--no-sync"] + jobs)
    with open(path, "wb") as f:
        for entry in closure:
            narinfo = os.path.join(warm, entry["path"].split("/")[-1][:32] + ".narinfo")
            url = next(line[5:] for line in open(narinfo).read().splitlines() if line.startswith("URL: "))
            with open(os.path.join(warm, url), "rb") as nar:
                shutil.copyfileobj(nar, f, 1 << 20)
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


# The disk floor's copy, run as its own process: every file under SRC into
# DST, created afresh, with sendfile (a copy in the kernel from the page
# cache, never a reflink, so every byte is written), then one syncfs for the
# lot: the cheapest way to make N files durable. It times itself and prints
# wall, user and system seconds: Python's start (~0.1 s here) is no part of
# the floor.
FLOOR_COPY = r"""
import ctypes, os, resource, sys, time
src, dst = sys.argv[1], sys.argv[2]
syncfs = ctypes.CDLL(None, use_errno=True).syncfs
start, usage = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
for d, _, files in os.walk(src):
    target = os.path.join(dst, os.path.relpath(d, src))
    os.makedirs(target, exist_ok=True)
    for name in files:
        with open(os.path.join(d, name), "rb") as i, open(os.path.join(target, name), "xb") as o:
            size, done = os.fstat(i.fileno()).st_size, 0
            while done < size:
                sent = os.sendfile(o.fileno(), i.fileno(), done, size - done)
                if not sent:
                    raise OSError(f"{i.name} shrank while copied")
                done += sent
if syncfs(os.open(dst, os.O_RDONLY | os.O_DIRECTORY)) != 0:
    raise OSError(ctypes.get_errno(), "syncfs " + dst)
wall, end = time.monotonic() - start, resource.getrusage(resource.RUSAGE_SELF)
print(wall, end.ru_utime - usage.ru_utime, end.ru_stime - usage.ru_stime)
"""


def disk_floor(cache, dst):
    """The floor for writing the files of `cache` (see FLOOR_COPY); they are
    read first, untimed, so that the copy only writes."""
    for d, _, files in os.walk(cache):
        for name in files:
            with open(os.path.join(d, name), "rb") as f:
                while f.read(8 << 20):
                    pass
    os.sync()
    wall, user, sys_ = map(float, sh(sys.executable, "-c", FLOOR_COPY, cache, dst).split())
    return Run(wall, user, sys_, 0.0)


def limit_cmd(compression, nar, out):
    level, threads = LIMIT_LEVEL[compression], cores()
    if compression == "zstd":
        return [f"zstd -T{threads} -{level}", ["zstd", f"-T{threads}", f"-{level}", "-q", "-f", nar, "-o", out]]
    return [f"xz -T{threads} -{level}", ["xz", f"-T{threads}", f"-{level}", "-c", nar]]


def bench_closure(label, root, closure_json, path_info_s, args, work):
    """Runs every compression on one closure; returns the table rows."""
    closure = json.loads(closure_json)
    closure_file = os.path.join(work, "closure.json")
    open(closure_file, "w").write(closure_json)
    nar_bytes = sum(e["narSize"] for e in closure)
    jobs = ["--jobs", str(args.jobs)] if args.jobs else []
    nar = os.path.join(work, "all.nar")
    print(f"bench: {label}: {len(closure)} store paths, {nar_bytes / 1e6:.1f} MB of NAR; "
          "writing it into one file for the compressor-alone runs…", file=sys.stderr, flush=True)
    concatenated_nar(closure, nar, jobs, work)
    rows = []
    for c in args.compressions:
        ours_runs, nix_runs, limit_runs, unsynced_runs, floor_runs = [], [], [], [], []
        for n in range(args.repeat):
            ours_dir, nix_dir = os.path.join(work, f"ours-{c}-{n}"), os.path.join(work, f"nix-{c}-{n}")
            print(f"bench: {label}, {c}, run {n + 1} of {args.repeat}…", file=sys.stderr, flush=True)
            run = measure([OURS, "--closure", closure_file, "--out", ours_dir, "--compression", c] + jobs)
            run.wall += path_info_s
            ours_runs.append(run)
            floor_runs.append(disk_floor(ours_dir, os.path.join(work, f"floor-{c}-{n}")))
            if c != "xz":
                # The disk's share: the same run without waiting for it
                # (nix copy never waits). With xz it is lost in the noise.
                unsynced = os.path.join(work, f"ours-no-sync-{c}-{n}")
                run = measure([OURS, "--closure", closure_file, "--out", unsynced, "--compression", c,
                               "--no-sync"] + jobs)
                run.wall += path_info_s
                unsynced_runs.append(run)
            nix_runs.append(measure(["nix", "copy", "--to", f"file://{nix_dir}?compression={c}", root]))
            if c != "none" and not args.no_limit:
                out = os.path.join(work, f"limit.{c}")
                name, cmd = limit_cmd(c, nar, out)
                with open(out, "wb") as f:
                    limit_runs.append(measure(cmd, stdout=f))
                os.remove(out)
        if read_cache(ours_dir, closure) != read_cache(nix_dir, closure):
            raise Fail(f"{label}, {c}: the caches disagree on NarHash")
        ours, nixc = median_run(ours_runs), median_run(nix_runs)
        limit = median_run(limit_runs) if limit_runs else None
        unsynced = median_run(unsynced_runs) if unsynced_runs else None
        floor = median_run(floor_runs)
        ours_size, nix_size = dir_size(ours_dir), dir_size(nix_dir)
        rows.append({
            "label": label, "compression": c, "paths": len(closure), "nar_mb": nar_bytes / 1e6,
            "path_info_s": path_info_s,
            "ours": ours, "nix": nixc, "limit": limit, "unsynced": unsynced, "floor": floor, "limit_name": limit_cmd(c, nar, "")[0] if limit else "",
            "ours_mb": ours_size / 1e6, "nix_mb": nix_size / 1e6,
        })
        print_row(rows[-1], file=sys.stderr)
    os.remove(nar)
    return rows


HEADER = ("| closure | compression | ours s | nix copy s | ours / nix copy | ours --no-sync s (/ nix copy) "
          "| compressor alone s | ours / alone | disk floor s | ours / max(alone, floor) (ours − max) "
          "| CPU ours (user+sys, cores) | CPU nix copy | peak RSS ours MB | peak RSS nix copy MB "
          "| output vs nix copy | paths/s ours |")


def print_row(r, file=sys.stdout):
    o, n, lim = r["ours"], r["nix"], r["limit"]
    alone = f"{lim.wall:.2f} ({r['limit_name']})" if lim else "—"
    vs_alone = f"{o.wall / lim.wall:.2f}" if lim else "—"
    floor = r["floor"]
    bound = max(lim.wall if lim else 0.0, floor.wall)
    vs_bound = f"{o.wall / bound:.2f} ({o.wall - bound:+.2f} s)"
    u = r["unsynced"]
    unsynced = f"{u.wall:.2f} ({u.wall / n.wall:.2f})" if u else "—"
    size = (r["ours_mb"] / r["nix_mb"] - 1) * 100 if r["nix_mb"] else 0.0
    print(f"| {r['label']} | {r['compression']} | {o.wall:.2f} | {n.wall:.2f} | **{o.wall / n.wall:.2f}** "
          f"| {unsynced} | {alone} | {vs_alone} | {floor.wall:.2f} | {vs_bound} | {o.user:.2f}+{o.sys:.2f} s, {o.util:.2f} | {n.util:.2f} "
          f"| {o.rss:.0f} | {n.rss:.0f} | {r['ours_mb']:.1f} MB ({size:+.1f} %) | {r['paths'] / o.wall:.0f} |",
          file=file, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="system,few-big,random,tiny",
                    help="comma-separated, of " + ", ".join(corpus.SHAPES) + " (default: all)")
    ap.add_argument("--compressions", default="none,zstd,xz")
    ap.add_argument("--sizes", default="600", metavar="MB,...",
                    help="sizes of the system shape in MB (default 600); several give a scaling curve")
    ap.add_argument("--few-big-sizes", default="583", metavar="MB,...",
                    help="sizes of the few-big shape in MB (default 583)")
    ap.add_argument("--count", type=int, default=10_000, help="store paths of the tiny shape (default 10000)")
    ap.add_argument("--jobs", type=int, default=0, help="our --jobs (default: all cores)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each, reporting the median (default 1)")
    ap.add_argument("--no-limit", action="store_true", help="skip the compressor-alone runs")
    ap.add_argument("--keep", action="store_true", help="keep the caches written (in --work)")
    ap.add_argument("--work", help="where caches are written (default: a new directory in $TMPDIR)")
    args = ap.parse_args()
    args.shapes = [s for s in args.shapes.split(",") if s]
    args.compressions = [c for c in args.compressions.split(",") if c]
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        few_big_sizes = [int(s) for s in args.few_big_sizes.split(",") if s]
    except ValueError:
        sys.exit("bench.py: --sizes and --few-big-sizes take sizes in MB separated by commas")
    for s in args.shapes:
        if s not in corpus.SHAPES:
            sys.exit(f"bench.py: unknown shape {s!r}: expected some of {', '.join(corpus.SHAPES)}")
    for c in args.compressions:
        if c not in ("none", "zstd", "xz"):
            sys.exit(f"bench.py: unknown compression {c!r}: expected some of none, zstd, xz")
    if args.repeat < 1:
        sys.exit("bench.py: --repeat must be at least 1")
    needed = {"nix": "Nix 2.8 or later (Debian: apt-get install nix-bin)", "nix-build": "Nix", "nix-store": "Nix",
              GNU_TIME: "GNU time, for CPU seconds and peak RSS (Debian: apt-get install time)",
              "cargo": "Rust's cargo (rustup, or Debian: apt-get install cargo)"}
    if not args.no_limit:
        needed.update({c: f"the {c} tool (Debian: apt-get install {'xz-utils' if c == 'xz' else c}), "
                       "or run with --no-limit" for c in args.compressions if c != "none"})
    missing = [f"{tool} ({what})" for tool, what in needed.items() if not shutil.which(tool)]
    if missing:
        sys.exit("bench.py: missing: " + "; ".join(missing))

    try:
        print("bench: building the release binary…", file=sys.stderr, flush=True)
        build = subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO)
        if build.returncode != 0:
            sys.exit("bench.py: cargo build --release failed (see above)")
        work_parent = args.work or tempfile.gettempdir()
        os.makedirs(work_parent, exist_ok=True)
        work = tempfile.mkdtemp(prefix="mbc-bench-", dir=work_parent)
        started = time.monotonic()
        machine = describe_machine(work)
        print(machine, file=sys.stderr)
        rows = []
        for shape in args.shapes:
            for size in {"system": sizes, "few-big": few_big_sizes}.get(shape, [None]):
                label = f"{shape} {size} MB" if size else shape
                root, _ = corpus.make(shape, size, args.count)
                t0 = time.monotonic()
                closure_json = sh("nix", "path-info", "--json", "--recursive", root)
                path_info_s = time.monotonic() - t0
                # Each closure gets its own directory, and the caches stay until
                # the end: for minutes after many files are deleted, ext4 creates
                # files slowly, which would favour whichever tool runs later.
                closure_work = os.path.join(work, label.replace(" ", "-"))
                os.mkdir(closure_work)
                rows += bench_closure(label, root, closure_json, path_info_s, args, closure_work)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    except Fail as e:
        sys.exit(f"bench.py: {e}")
    except KeyboardInterrupt:
        sys.exit("bench.py: interrupted")

    print(f"\n```\n{machine}\n```\n")
    closures = {}
    for r in rows:
        closures.setdefault(r["label"], r)
    for label, r in closures.items():
        print(f"- {label}: {r['paths']} store paths, {r['nar_mb']:.1f} MB of NAR; the `nix path-info` query "
              f"{r['path_info_s']:.2f} s (counted in ours)")
    print(f"\nOne run each{'' if args.repeat == 1 else f', median of {args.repeat}'}; ours includes the "
          "`nix path-info --json --recursive` query; CPU is (user+sys)/wall in cores; "
          "compressor alone: on the concatenated NAR in the page cache; disk floor: ours' files copied "
          "(sendfile, from the page cache) into a new directory, then one syncfs; sync(2) before each command. "
          f"Total {time.monotonic() - started:.0f} s, "
          f"load average {os.getloadavg()[0]:.2f} at the end.\n")
    print(HEADER)
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print_row(r)
    system_rows = [r for r in rows if r["label"].startswith("system ")]
    if len({r["label"] for r in system_rows}) > 1:
        print("\nScaling (system shape):\n")
        print("| compression | NAR MB | store paths | ours s | s per GB of NAR | peak RSS ours MB | ours / nix copy |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in sorted(system_rows, key=lambda r: (r["compression"], r["nar_mb"])):
            print(f"| {r['compression']} | {r['nar_mb']:.0f} | {r['paths']} | {r['ours'].wall:.2f} "
                  f"| {r['ours'].wall / (r['nar_mb'] / 1000):.2f} | {r['ours'].rss:.0f} "
                  f"| {r['ours'].wall / r['nix'].wall:.2f} |")


if __name__ == "__main__":
    main()
