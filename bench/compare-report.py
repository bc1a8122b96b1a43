#!/usr/bin/env python3
"""Summarises bench/compare's JSON lines: a table, ratios, targets, and a CSV.

usage: compare-report.py RESULTS.jsonl OUT.csv WORKERS CONNECTIONS THREADS DURATION IDLE
"""
import csv
import datetime
import json
import os
import sys


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main():
    res_path, csv_path = sys.argv[1], sys.argv[2]
    workers, conns, threads, duration, idle = sys.argv[3:8]
    rows = [json.loads(l) for l in open(res_path) if l.strip()]
    by = {r["label"]: r for r in rows}
    servers = [s for s in ("certgate-token", "certgate-pem", "nginx", "nginx-pem")
               if any(k.startswith(s + ":") for k in by)]
    machine = f"{os.cpu_count()} CPUs, {cpu_model()}"
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")

    print(f"\ncertgate bench/compare  {now}  {machine}")
    print(f"workers {workers}, client: {conns} connections, {threads} threads, "
          f"{duration} s per scenario (client and servers share the machine)\n")
    hdr = (f"{'scenario':10s} {'server':15s} {'req/s':>9s} {'hs/s':>8s} {'p50 ms':>8s} "
           f"{'p90 ms':>8s} {'p99 ms':>8s} {'p99.9':>8s} {'max ms':>8s} "
           f"{'cpu us/op':>9s} {'errors':>6s}")
    print(hdr)
    print("-" * len(hdr))
    out = []

    def cpu_op(r):
        s = r["server"]
        return s["cpu_us_per_request"] if r["mode"] == "keepalive" else s["cpu_us_per_handshake"]

    for sc in ("new", "resume", "keepalive"):
        for s in servers:
            r = by.get(f"{s}:{sc}")
            if r is None:
                continue
            L = r["latency_ms"]
            print(f"{sc:10s} {s:15s} {r['requests_per_s']:9.1f} {r['handshakes_per_s']:8.1f} "
                  f"{L['p50']:8.3f} {L['p90']:8.3f} {L['p99']:8.3f} {L['p99.9']:8.3f} "
                  f"{L['max']:8.3f} {cpu_op(r):9.1f} {r['errors']:6d}")
            for k, v in (("requests_per_s", r["requests_per_s"]),
                         ("handshakes_per_s", r["handshakes_per_s"]),
                         ("p50_ms", L["p50"]), ("p90_ms", L["p90"]), ("p99_ms", L["p99"]),
                         ("p99.9_ms", L["p99.9"]), ("max_ms", L["max"]),
                         ("server_cpu_us_per_op", round(cpu_op(r), 1)),
                         ("errors", r["errors"])):
                out.append((s, sc, k, v))
    print()
    for s in servers:
        r = by.get(f"{s}:idle")
        if r is None:
            continue
        i = r["idle"]
        print(f"idle       {s:15s} {i['established']} of {i['wanted']} held, "
              f"{i['rss_kib_per_connection']:.2f} KiB RSS per connection "
              f"({r['server']['rss_kib_start']} -> {r['server']['rss_kib_hold']} KiB), "
              f"dropped {i['dropped']}, errors {r['errors']}")
        out += [(s, "idle", "established", i["established"]),
                (s, "idle", "rss_kib_per_connection", round(i["rss_kib_per_connection"], 2))]

    for s in servers:
        r = by.get(f"{s}:sessions")
        if r is None or not r["full_handshakes"]:
            continue
        srv = r["server"]
        kib = (srv["rss_kib_after"] - srv["rss_kib_before"]) / r["full_handshakes"]
        print(f"sessions   {s:15s} {kib:.2f} KiB RSS per cached session "
              f"({r['full_handshakes']} closed full handshakes, "
              f"{srv['rss_kib_before']} -> {srv['rss_kib_after']} KiB)")
        out.append((s, "sessions", "rss_kib_per_session", round(kib, 2)))
    for s in servers:
        r = by.get(f"{s}:flood")
        if r is None:
            continue
        L = r["latency_ms"]
        print(f"flood      {s:15s} keep-alive at {r['rate']:.0f} req/s offered during a "
              f"16-client handshake flood: p50 {L['p50']:.2f} p99 {L['p99']:.2f} "
              f"p99.9 {L['p99.9']:.2f} max {L['max']:.2f} ms, unsent {r['unsent']}, "
              f"errors {r['errors']}")
        out += [(s, "flood", "p50_ms", L["p50"]), (s, "flood", "p99_ms", L["p99"]),
                (s, "flood", "p99.9_ms", L["p99.9"]), (s, "flood", "errors", r["errors"])]

    sp = by.get("openssl:speed")
    if sp:
        print(f"openssl speed ecdsap256 (1 core): {sp['sign_per_s']:.0f} sign/s, "
              f"{sp['verify_per_s']:.0f} verify/s")
        out += [("openssl", "ecdsap256", "sign_per_s", sp["sign_per_s"]),
                ("openssl", "ecdsap256", "verify_per_s", sp["verify_per_s"])]
    spy = by.get("spy:signs")
    sn, sr = by.get("spy:new"), by.get("spy:resume")
    per_full = per_res = None
    if spy and sn and sr:
        full = sn["full_handshakes"] + sn["warmup_full_handshakes"]
        per_full = spy["signs_new"] / full if full else float("nan")
        res = sr["resumed_handshakes"] + sr["warmup_resumed_handshakes"]
        extra = spy["signs_resume"] - sr["full_handshakes"] - sr["warmup_full_handshakes"]
        per_res = extra / res if res else float("nan")
        print(f"pkcs11-spy: {spy['signs_new']} C_Sign for {full} full handshakes "
              f"({per_full:.2f} each); {spy['signs_resume']} C_Sign for "
              f"{sr['full_handshakes'] + sr['warmup_full_handshakes']} full + {res} resumed "
              f"handshakes ({per_res:.2f} per resumed)")
        out += [("certgate-token", "spy", "c_sign_per_full_handshake", round(per_full, 3)),
                ("certgate-token", "spy", "c_sign_per_resumed_handshake", round(per_res, 3))]

    def get(s, sc, k):
        r = by.get(f"{s}:{sc}")
        # A run with errors measured something else: no ratio, no target from it.
        if r is None or r["errors"] > 0 or r["requests"] == 0:
            return None
        if k == "cpu":
            return cpu_op(r)
        return r[k]

    def ratio(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    def fmt(x):
        return "n/a" if x is None else f"{x:.2f}"

    print("\nratios (throughput: higher is better for certgate; cpu/op: lower is better)")
    for sc, k in (("new", "handshakes_per_s"), ("resume", "handshakes_per_s"),
                  ("keepalive", "requests_per_s")):
        cn = ratio(get("certgate-token", sc, k), get("nginx", sc, k))
        cc = ratio(get("certgate-token", sc, "cpu"), get("nginx", sc, "cpu"))
        tp = ratio(get("certgate-token", sc, k), get("certgate-pem", sc, k))
        tc = ratio(get("certgate-token", sc, "cpu"), get("certgate-pem", sc, "cpu"))
        pn = ratio(get("certgate-pem", sc, k), get("nginx-pem", sc, k))
        pc = ratio(get("certgate-pem", sc, "cpu"), get("nginx-pem", sc, "cpu"))
        print(f"  {sc:10s} certgate/nginx {fmt(cn)} (cpu/op {fmt(cc)})   "
              f"token/PEM {fmt(tp)} (cpu/op {fmt(tc)})   "
              f"PEM certgate/nginx {fmt(pn)} (cpu/op {fmt(pc)})")
        out += [("ratio", sc, "pem_certgate_over_nginx", pn),
                ("ratio", sc, "pem_certgate_over_nginx_cpu", pc)]
        out += [("ratio", sc, "certgate_over_nginx", cn), ("ratio", sc, "certgate_over_nginx_cpu", cc),
                ("ratio", sc, "token_over_pem", tp), ("ratio", sc, "token_over_pem_cpu", tc)]

    print("\ntargets")

    def target(name, ok, detail):
        state = "n/a " if ok is None else ("MET " if ok else "MISS")
        print(f"  [{state}] {name}: {detail}")
        out.append(("target", name, "met", "" if ok is None else int(ok)))

    def both(x, y):
        return x is not None and y is not None

    # Issue 18's targets: the keep-alive CPU first, since agents keep connections open.
    kc, kn = get("certgate-token", "keepalive", "cpu"), get("nginx", "keepalive", "cpu")
    target("cpu/keep-alive tools/call <= nginx / 1.2", kc <= kn / 1.2 if both(kc, kn) else None,
           f"{fmt(kc)} vs {fmt(kn)} us (limit {fmt(kn / 1.2 if kn else None)})")
    a = get("certgate-token", "new", "handshakes_per_s")
    b = get("nginx", "new", "handshakes_per_s")
    target("full handshakes >= 1.2 x nginx", a >= 1.2 * b if both(a, b) else None,
           f"{fmt(a)} vs {fmt(b)} /s ({fmt(ratio(a, b))}x)")
    for sc in ("new", "resume"):
        ca, cb = get("certgate-token", sc, "cpu"), get("nginx", sc, "cpu")
        target(f"cpu/{'full' if sc == 'new' else 'resumed'} handshake <= nginx / 1.3",
               ca <= cb / 1.3 if both(ca, cb) else None,
               f"{fmt(ca)} vs {fmt(cb)} us (limit {fmt(cb / 1.3 if cb else None)})")
    target("0 token signatures per resumed handshake",
           None if per_res is None else per_res == 0, f"{fmt(per_res)}")
    r = by.get("certgate-token:idle")
    kib = r["idle"]["rss_kib_per_connection"] if r else None
    target("idle connections <= 12 KiB RSS each",
           None if kib is None else kib <= 12, f"{fmt(kib)} KiB with {idle} wanted")
    sess = {s: v for s, sc, k, v in out if sc == "sessions"}
    kib = sess.get("certgate-token")
    target("session cache <= 2 KiB per cached session",
           None if kib is None else kib <= 2, f"{fmt(kib)} KiB")
    fa, fb = get("certgate-token", "flood", "latency_ms"), get("nginx", "flood", "latency_ms")
    fa, fb = (fa or {}).get("p99"), (fb or {}).get("p99")
    target("keep-alive p99 during a handshake flood <= 5 ms",
           None if fa is None else fa <= 5, f"{fmt(fa)} ms (nginx {fmt(fb)} ms)")

    os.makedirs(os.path.dirname(csv_path), exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date", "machine", "workers", "connections", "threads", "duration_s",
                    "server", "scenario", "metric", "value"])
        for s, sc, k, v in out:
            w.writerow([now, machine, workers, conns, threads, duration, s, sc, k,
                        "" if v is None else v])
    print(f"\nwrote {csv_path}")
    bad = [r["label"] for r in rows if r.get("errors", 0) > 0]
    if bad:
        print("runs with errors (their figures are not comparable): " + ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
