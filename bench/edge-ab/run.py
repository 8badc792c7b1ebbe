#!/usr/bin/env python3
"""The edge HIT, this checkout against another revision, measured the one way these shared
2-core machines allow: both workers at once in workerd, each pinned to core 0 with wrk pinned to
core 1, in interleaved rounds (ABAB...; the order flips every round), CPU per request read from
/proc for workerd (and the Node process running Miniflare) and requests per second from wrk.

    make bench-edge-ab REV=b4feac2        # or: python3 bench/edge-ab/run.py REV

It builds REV's edge in a git worktree (its own target dir under .local/), runs both against one
origin (target/release/origin on the 10k bench catalog; `make bench` seeds it) and answers the
price path from each worker's memo (a HIT). Both workers' log lines go to a file
(tests/edge/serve.mjs EDGE_LOG_FILE), not through Node. Every response counted must be a 2xx
(else the run fails), and this checkout's log says how many were answered as HIT (a price
turns stale every 30 s: a few are STALE while one refresh runs). Loopback only; ROUNDS x 2 x SECS
seconds of load.
"""
import json, os, statistics, subprocess, sys, time, urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
PATH = "/v1/catalog/5sim/prices/ad/whatsapp"
ROUNDS, SECS = int(os.environ.get("ROUNDS", 10)), int(os.environ.get("SECS", 4))
TICK = os.sysconf("SC_CLK_TCK")


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def build_rev(rev):
    tree = os.path.join(ROOT, ".local/edge-ab", rev)
    if not os.path.isdir(tree):
        sh("git", "-C", ROOT, "worktree", "add", "--detach", "-f", tree, rev, stdout=subprocess.DEVNULL)
    link = os.path.join(tree, "node_modules")
    if not os.path.exists(link):
        os.symlink(os.path.join(ROOT, "node_modules"), link)
    env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, ".local/edge-ab/target"))
    sh("bash", "scripts/build-edge.sh", cwd=tree, env=env, stdout=subprocess.DEVNULL)
    # The revision's serve.mjs may predate EDGE_LOG_FILE: run it with this checkout's harness.
    return tree


def tree_of(pid):
    pids = [pid]
    for p in pids:
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                pids += [int(k) for k in f.read().split()]
        except OSError:
            pass
    return pids


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def start(name, tree, port, origin_port, log):
    harness = os.path.join(ROOT, "tests/edge/serve.mjs")
    vars_ = {"EDGE_ENV": "local", "ORIGIN_URL": f"http://127.0.0.1:{origin_port}",
             "RATE_LIMIT_PER_MINUTE": "1000000000", "RATE_LIMIT_BURST": "1000000000",
             "EDGE_INSECURE_DEV": "true"}
    env = dict(os.environ, EDGE_PORT=str(port), EDGE_DIRECT_PORT=str(port + 1),
               EDGE_VARS=json.dumps(vars_), EDGE_LOG_FILE=log)
    # serve.mjs finds the worker relative to itself: give it the tree's copy of the harness.
    dst = os.path.join(tree, "tests/edge/serve.mjs")
    if os.path.abspath(dst) != harness:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        sh("cp", harness, dst)
        sh("cp", os.path.join(ROOT, "tests/edge/workerd-log-to-file.sh"), os.path.dirname(dst))
    p = subprocess.Popen(["taskset", "-c", "0", "node", "tests/edge/serve.mjs"], cwd=tree, env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    line = p.stdout.readline()
    if not line.startswith(b"READY"):
        sys.exit(f"{name}: the worker did not start: {line!r}")
    url = f"http://127.0.0.1:{port + 1}{PATH}"
    for _ in range(3):
        urllib.request.urlopen(url).read()
    r = urllib.request.urlopen(url)
    if r.status != 200 or r.headers.get("x-cache") != "HIT":
        sys.exit(f"{name}: the warm-up was not a 200 HIT ({r.status} {r.headers.get('x-cache')})")
    return p, url


def measure(p, url):
    pids = tree_of(p.pid)
    before = {q: cpu(q) for q in pids}
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c16", f"-d{SECS}s",
                          "-s", os.path.join(ROOT, "bench/wrk/report.lua"), url],
                         capture_output=True, text=True, env=dict(os.environ, WRK_PATHS="")).stdout
    used = sum(cpu(q) - before[q] for q in pids)
    report = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    if report["errors"]:
        sys.exit(f"{url}: {report['errors']} responses were not 2xx or failed")
    return report["requests"] / (report["duration_us"] / 1e6), used / report["requests"] * 1e6, report["requests"]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rev = sys.argv[1]
    origin_bin = os.path.join(ROOT, "target/release/origin")
    admin = os.environ.get("PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    db = admin.rsplit("/", 1)[0] + "/nexnum_bench_10k"
    # The 10k catalog `make bench` seeds; seeded here (idempotently) when it is not there.
    have = subprocess.run(["psql", admin, "-qtAc", "SELECT 1 FROM pg_database WHERE datname = 'nexnum_bench_10k'"],
                          capture_output=True, text=True)
    if have.returncode != 0:
        sys.exit(f"error: psql could not reach {admin}: {have.stderr.strip()}")
    if have.stdout.strip() != "1":
        sh("psql", admin, "-qc", "CREATE DATABASE nexnum_bench_10k")
    sh(origin_bin, "seed", "--scale", "10k", env=dict(os.environ, DATABASE_URL=db, RUST_LOG="warn"),
       stdout=subprocess.DEVNULL)
    origin_port = 18380
    origin = subprocess.Popen([origin_bin, "serve"], env=dict(
        os.environ, DATABASE_URL=db, REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
        ORIGIN_ADDR=f"127.0.0.1:{origin_port}", METRICS_ADDR=f"127.0.0.1:{origin_port + 1}",
        REDIS_KEY_PREFIX="edge-ab:", RATE_LIMITS="api=1000000000/60000,auth=1000000000/60000",
        RUST_LOG="warn"), stdout=subprocess.DEVNULL)
    procs = []
    try:
        for _ in range(50):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{origin_port}/healthz")
                break
            except OSError:
                time.sleep(0.2)
        other = build_rev(rev)
        log_dir = os.path.join(ROOT, ".local/edge-ab")
        builds = [(rev, other, 18390), ("this checkout", ROOT, 18395)]
        for name, tree, port in builds:
            log = os.path.join(log_dir, f"log-{port}.txt")
            open(log, "w").close()
            p, url = start(name, tree, port, origin_port, log)
            procs.append((name, p, url))
        rows = {name: [] for name, _, _ in procs}
        for r in range(ROUNDS):
            for name, p, url in (procs if r % 2 == 0 else procs[::-1]):
                rows[name].append(measure(p, url))
                rps, us, _ = rows[name][-1]
                print(f"round {r + 1}/{ROUNDS} {name:<14} {rps:8.0f} req/s {us:6.1f} us CPU/request", file=sys.stderr)
        print(f"edge HIT, {ROUNDS} interleaved rounds of {SECS} s (medians; workerd pinned to core 0, wrk to core 1)")
        for name, samples in rows.items():
            rps = statistics.median(s[0] for s in samples)
            us = statistics.median(s[1] for s in samples)
            print(f"  {name:<14} {rps:8.0f} req/s  {us:6.1f} us CPU/request  ({sum(s[2] for s in samples)} requests, all 2xx)")
        with open(os.path.join(log_dir, "log-18395.txt")) as f:
            lines = [l for l in f if l.startswith("{") and '"request_id"' in l]
        hits = sum(1 for l in lines if '"cache":"HIT"' in l)
        print(f"  this checkout logged {len(lines)} access lines, {hits} of them HIT")
        a, b = rows[rev], rows["this checkout"]
        lower = sum(1 for x, y in zip(a, b) if y[1] <= x[1])
        print(f"  this checkout used no more CPU per request than {rev} in {lower} of {ROUNDS} rounds")
    finally:
        for _, p, _ in procs:
            p.stdin.close()
            p.terminate()
        origin.terminate()


if __name__ == "__main__":
    main()
