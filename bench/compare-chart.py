#!/usr/bin/env python3
"""Draws bench/compare's CSV as one chart (gnuplot): a panel per figure, a bar per
server (certgate with the token key and with a PEM key, nginx with the engine and
with a PEM key). Writes OUT.png and OUT.svg.

usage: compare-chart.py COMPARE.csv OUT   (OUT without extension)
"""
import csv
import os
import subprocess
import sys
import tempfile

SERVERS = ("certgate-token", "certgate-pem", "nginx", "nginx-pem")
# (scenario, metric, panel title); lower is better for all but the throughputs
PANELS = (
    ("keepalive", "server_cpu_us_per_op", "server CPU per keep-alive tools/call (us, lower is better)"),
    ("new", "server_cpu_us_per_op", "server CPU per full mTLS handshake (us, lower is better)"),
    ("resume", "server_cpu_us_per_op", "server CPU per resumed handshake (us, lower is better)"),
    ("new", "handshakes_per_s", "full handshakes/s (higher is better)"),
    ("keepalive", "requests_per_s", "keep-alive tools/call req/s (higher is better)"),
    ("flood", "p99_ms", "keep-alive p99 during a handshake flood (ms, lower is better)"),
    ("idle", "rss_kib_per_connection", "RSS per idle mTLS connection (KiB, lower is better)"),
    ("sessions", "rss_kib_per_session", "RSS per cached TLS session (KiB, lower is better)"),
)


def main():
    src, out = sys.argv[1], sys.argv[2]
    val, date = {}, ""
    for r in csv.DictReader(open(src)):
        date = r["date"]
        if r["value"] not in ("", None):
            try:
                val[(r["server"], r["scenario"], r["metric"])] = float(r["value"])
            except ValueError:
                pass
    servers = [s for s in SERVERS if any(k[0] == s for k in val)]
    panels = [p for p in PANELS if any((s, p[0], p[1]) in val for s in servers)]
    if not servers or not panels:
        print("compare-chart: nothing to draw", file=sys.stderr)
        return 1
    d = tempfile.mkdtemp(prefix="compare-chart.")
    cols = (len(panels) + 1) // 2
    script = []
    for i, (sc, m, title) in enumerate(panels):
        path = os.path.join(d, f"p{i}.dat")
        with open(path, "w") as f:
            for j, s in enumerate(servers):
                v = val.get((s, sc, m))
                f.write(f'{j} "{s}" {v if v is not None else "NaN"}\n')
        script.append(f'set title "{title}"')
        script.append(f'plot "{path}" using 1:3:($1+1):xtic(2) with boxes lc variable notitle, '
                      f'"" using 1:3:($3 < 100 ? sprintf("%.1f",$3) : sprintf("%.0f",$3)) with labels offset 0,0.7 notitle')
    head = [
        "set style fill solid 0.8 border -1", "set boxwidth 0.6", "set yrange [0:*]",
        "set offsets 0.5,0.5,graph 0.15,0", "set xtics nomirror scale 0 font ',9'",
        "set grid ytics", "set key off",
    ]
    for term, ext in (("pngcairo size 1400,%d font 'sans,10'" % (330 * cols), "png"),
                      ("svg size 1400,%d font 'sans,10' dynamic" % (330 * cols), "svg")):
        g = [f"set terminal {term}", f'set output "{out}.{ext}"'] + head + [
            f'set multiplot layout {cols},2 title "certgate vs nginx, bench/compare {date}"'
        ] + script + ["unset multiplot"]
        subprocess.run(["gnuplot"], input="\n".join(g), text=True, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
