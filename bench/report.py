#!/usr/bin/env python3
"""The table, the plots and docs/benchmarks.md, from bench.py's results.

Also runnable alone, to rewrite the docs from a kept run (HS_KEEP=1):
    python3 bench/report.py /tmp/hubspot_events.XXXXXX/results .
"""

import json
import os
import shutil
import subprocess
import sys


def fmt_table(rows, markdown=False):
    head = ("scenario", "measure", "result", "target", "")
    cells = [head] + [(a, b, c, d, e or "") for a, b, c, d, e in rows]
    if markdown:
        out = ["| scenario | measure | result | target | |", "|---|---|---:|---|---|"]
        for a, b, c, d, e in cells[1:]:
            out.append("| %s | %s | %s | %s | %s |" % (a, b, c, d.replace("<=", "≤").replace(">=", "≥") if d else "",
                                                      "**%s**" % e if e else ""))
        return "\n".join(out)
    w = [max(len(str(r[i])) for r in cells) for i in range(5)]
    lines = []
    for i, r in enumerate(cells):
        lines.append("  ".join(str(c).ljust(w[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * x for x in w))
    return "\n".join(lines)


def print_table(rows):
    print()
    print(fmt_table(rows))
    print()


def gnuplot(script):
    if not shutil.which("gnuplot"):
        print("gnuplot not found: no plot", file=sys.stderr)
        return False
    p = subprocess.run(["gnuplot"], input=script.encode())
    if p.returncode != 0:
        # (a plot is not worth the report: e.g. too few samples in a scaled-down run)
        print("gnuplot failed: no plot", file=sys.stderr)
        return False
    return True


def batch(s2, bs):
    """scenario 2's figures for one batch size (int keys in the run, str keys in results.json)."""
    by = s2["by_batch"]
    return by.get(bs, by.get(str(bs)))


def mb(kb):
    return kb / 1024.0


def plots(results, out, docs):
    """The plots, each with its caption (what is plotted and what to see, from
    the data): {scenario: (file, alt text, caption)}."""
    made = {}
    s = results["scenarios"]
    if "2" in s:
        data = os.path.join(out, "drain.dat")
        rows = sorted(s["2"]["by_batch"].items(), key=lambda kv: int(kv[0]))
        with open(data, "w") as fh:
            for i, (bs, r) in enumerate(rows):
                fh.write("%d %s %.1f %.1f %.4f %s %s\n" % (i, bs, r["contacts_per_s"], r["requests_per_s"], r["worker_cpu_s_per_10k"],
                                                         format(round(r["contacts_per_s"]), ","), format(round(r["requests_per_s"]), ",")))
        top = max(r["contacts_per_s"] for _, r in rows)
        cpus = [r["worker_cpu_s_per_10k"] for _, r in rows]
        png = os.path.join(docs, "bench-drain.png")
        # two panels: throughput (bars at i - 1/6 and i + 1/6: two series, gap 1) and the
        # worker's CPU per contact, each value printed on its bar
        if gnuplot("""
set terminal pngcairo size 1000,520 font "sans,11" noenhanced
set output "%s"
set multiplot layout 1,2 title "Drain by batch_size (scenario 2: mock answering in 2 ms, no rate limit)"
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 1
set grid ytics
set xlabel "batch_size (contacts per request)"
set xrange [-0.6:%d.6]
set title "Throughput"
set style histogram clustered gap 1
set logscale y
set yrange [10:%g]
set format y "%%.0f"
set ylabel "per second (log scale)"
set key top left Left reverse samplen 2
plot "%s" using 3:xtic(2) lc rgb "#1f77b4" title "contacts/s", "" using 4 lc rgb "#ff7f0e" title "requests/s", \\
     "" using ($1-1.0/6):($3*1.3):6 with labels notitle, \\
     "" using ($1+1.0/6):($4*1.3):7 with labels notitle, \\
     25000 with lines dt 2 lw 1.5 lc rgb "#1f77b4" title "target at batch 100: 25,000 contacts/s", \\
     19 with lines dt 2 lw 1.5 lc rgb "#ff7f0e" title "HubSpot, one account: 19 requests/s"
set title "The worker's CPU per contact"
unset logscale y
set yrange [0:%g]
set format y "%%.2f"
set ylabel "worker CPU s per 10,000 contacts"
set style histogram clustered gap 2
set key top right Left reverse samplen 2
plot "%s" using 5:xtic(2) lc rgb "#2ca02c" notitle, \\
     "" using 1:($5):(sprintf("%%.3f s", $5)) with labels offset 0,0.8 notitle, \\
     0.25 with lines dt 2 lw 1.5 lc rgb "#2ca02c" title "target at batch 100: 0.25 s"
unset multiplot
""" % (png, len(rows) - 1, 10 ** (len("%d" % int(max(top, 25000))) + 1), data, max(cpus) * 1.25, data)):
            first, last = rows[0], rows[-1]
            made["2"] = ("bench-drain.png", "Drain throughput and the worker's CPU cost by batch size (scenario 2)",
                         "Left: contacts and requests sent per second at each `batch_size` (log scale); right: the "
                         "worker's CPU seconds per 10,000 contacts; dashed, the targets at batch_size 100 and HubSpot's "
                         "limit for one Professional account (19 requests/s). From batch_size %s to %s, contacts/s grow "
                         "%.0f-fold (%s to %s) while the worker's CPU per contact falls from %.3f to %.3f s per 10,000: "
                         "much of its cost is per request, so larger batches cost less per contact."
                         % (first[0], last[0], last[1]["contacts_per_s"] / first[1]["contacts_per_s"],
                            format(round(first[1]["contacts_per_s"]), ","), format(round(last[1]["contacts_per_s"]), ","),
                            first[1]["worker_cpu_s_per_10k"], last[1]["worker_cpu_s_per_10k"]))
    lat_path = os.path.join(out, "latency_ms.txt")
    if "3" in s and os.path.exists(lat_path):
        r = s["3"]
        lat = sorted(float(x) for x in open(lat_path).read().split())
        n = len(lat)
        # a log x axis: the body (1 to 3 ms) and the tail (up to the max and
        # the 25 ms target) both readable; latencies at or below the left
        # edge (those below 0 too) are drawn on it
        steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
        positive = [x for x in lat if x > 0]
        lo = max([t for t in steps if t <= (positive[0] if positive else 1) / 1.2] or [0.1])
        hi = min([t for t in steps if t >= max(lat[-1], 25) * 1.3] or [steps[-1]])
        under = sum(1 for x in lat if x <= lo)
        data = os.path.join(out, "latency.dat")
        with open(data, "w") as fh:
            for i, x in enumerate(lat):
                fh.write("%.3f %.4f\n" % (max(x, lo), 100.0 * (i + 1) / n))
        png = os.path.join(docs, "bench-latency.png")
        if gnuplot("""
set terminal pngcairo size 900,560 font "sans,11" noenhanced
set output "%(png)s"
set title "Commit-to-request latency, %(n)d single-row commits at idle (cumulative)"
set xlabel "ms from COMMIT returning to the mock receiving the request (log scale)"
set ylabel "%% of commits sent within x ms"
set logscale x
set xrange [%(lo)g:%(hi)g]
set xtics (%(xtics)s)
set yrange [0:112]
set ytics 0,10,100
set grid
unset key
set arrow from 5, graph 0 to 5, graph 1 nohead dt 2 lw 1.5 lc rgb "#555555"
set arrow from 25, graph 0 to 25, graph 1 nohead dt 2 lw 1.5 lc rgb "#555555"
set label "p50 target 5 ms" at 5, 3 left rotate by 90 offset -1.3,0 tc rgb "#555555"
set label "p99 target 25 ms" at 25, 3 left rotate by 90 offset -1.3,0 tc rgb "#555555"
set label "p50 %(p50).2f ms" at %(p50x)g, 50 point pt 7 ps 1.2 lc rgb "#d62728" offset 1,-0.8
set label "p99 %(p99).2f ms" at %(p99x)g, 99 point pt 7 ps 1.2 lc rgb "#d62728" offset 1,-0.8
set label "max %(max).2f ms" at %(maxx)g, 100 center point pt 6 ps 1.2 lc rgb "#d62728" offset 0,1.2
plot "%(data)s" using 1:2 with steps lw 2 lc rgb "#1f77b4" notitle
""" % dict(png=png, n=n, lo=lo, hi=hi, data=data, p50=r["p50_ms"], p99=r["p99_ms"], max=r["max_ms"],
           p50x=max(r["p50_ms"], lo), p99x=max(r["p99_ms"], lo), maxx=max(lat[-1], lo),
           xtics=", ".join('"%g" %g' % (t, t) for t in steps if lo <= t <= hi))):
            within5 = sum(1 for x in lat if x <= 5) / n
            within25 = sum(1 for x in lat if x <= 25) / n
            made["3"] = ("bench-latency.png", "Commit-to-request latency distribution (scenario 3)",
                         "The share of the %d commits whose request reached the mock within x ms (x on a log scale), with "
                         "the two targets as dashed lines. Half are sent within %.2f ms and 99%% within %.2f ms; "
                         "%.1f%% are within the p50 target (5 ms) and %.1f%% within the p99 target (25 ms); the slowest "
                         "took %.2f ms.%s"
                         % (n, r["p50_ms"], r["p99_ms"], 100 * within5, 100 * within25, r["max_ms"],
                            (" %d latenc%s at or below %g ms (%d below 0) %s drawn at the left edge."
                             % (under, "y" if under == 1 else "ies", lo, r["negative"], "is" if under == 1 else "are"))
                            if under else ""))
    rss = os.path.join(out, "rss.txt")
    if "5" in s and os.path.exists(rss) and os.path.getsize(rss) > 0:
        r = s["5"]
        samples = [tuple(float(v) for v in line.split()) for line in open(rss) if line.strip()]
        # the sending rate: averages over windows of a thirtieth of the drain (at least 1 s)
        window = max(1.0, samples[-1][0] / 30)
        rates = []
        t0, n0 = samples[0][0], samples[0][1]
        for el, done, _, _ in samples[1:]:
            if el - t0 >= window - 1e-6:
                rates.append(((n0 + done) / 2, (done - n0) / (el - t0)))
                t0, n0 = el, done
        data = os.path.join(out, "rss.dat")
        with open(data, "w") as fh:
            for el, done, vmrss, anon in samples:
                fh.write("%d %.2f %.2f\n" % (done, mb(vmrss), mb(anon)))
        rdata = os.path.join(out, "rate.dat")
        # (a drain shorter than a window: its average)
        points = rates or [(samples[-1][1], r["contacts_per_s"])]
        with open(rdata, "w") as fh:
            for x, y in points:
                fh.write("%d %.1f\n" % (x, y))
        ymax = max(mb(v) for _, _, v, _ in samples) * 1.15
        y2max = max(y for _, y in points) * 1.15
        png = os.path.join(docs, "bench-rss.png")
        # two panels on the same x axis: the memory (both lines in MB, from zero) and the
        # sending rate; the legend under the memory panel's axis, out of the data
        if gnuplot("""
set terminal pngcairo size 900,700 font "sans,11" noenhanced
set output "%s"
set multiplot title "The worker's memory while it sends %s contacts (scenario 5)"
set lmargin at screen 0.10
set rmargin at screen 0.95
set grid
set format x "%%.0s%%c"
set xrange [0:*]
set origin 0,0.36
set size 1,0.60
set tmargin at screen 0.90
set bmargin at screen 0.47
set ylabel "MB"
set yrange [0:%g]
set format x ""
set key outside bottom center horizontal
plot "%s" using 1:2 with lines lw 2 lc rgb "#9467bd" title "VmRSS (includes the shared buffers touched)", \\
     "" using 1:3 with lines lw 2 lc rgb "#2ca02c" title "RssAnon (private memory: a leak would show here)"
set tmargin at screen 0.34
set bmargin at screen 0.09
set format x "%%.0s%%c"
set xlabel "contacts sent"
set ylabel "contacts/s"
set yrange [0:%g]
set key outside bottom center horizontal
unset key
set label 1 "sending rate (%.0f s averages)" at graph 0.02, graph 0.12
plot "%s" using 1:2 with linespoints lw 1.5 pt 7 ps 0.6 lc rgb "#1f77b4" notitle
unset multiplot
""" % (png, format(n_target(r), ","), ymax, data, y2max, window, rdata)):
            cap = []
            if r.get("anon_growth_kb") is not None:
                cap.append("RssAnon, the worker's private memory, is %.1f MB after the first %s contacts and %.1f MB at the "
                           "end (%+.1f MB); VmRSS grows from %.1f to %.1f MB as the worker touches more of the shared "
                           "buffers (up to `shared_buffers`), which is not its own memory."
                           % (mb(r["anon_after_first_kb"]), format(r["rss_first_at"], ","), mb(r["anon_end_kb"]),
                              mb(r["anon_growth_kb"]), mb(samples[0][2]), mb(samples[-1][2])))
            if rates:
                ys = [y for _, y in rates]
                cap.append("The sending rate ranges from %s to %s contacts/s over the drain (%s on average); "
                           "the memory does not follow it." % tuple(format(round(v), ",") for v in (min(ys), max(ys), r["contacts_per_s"])))
            made["5"] = ("bench-rss.png", "The worker's resident memory over the %s-contact run (scenario 5)"
                         % format(n_target(r), ","), "Top: the worker's memory (MB, from zero); bottom: how fast it sent "
                         "(contacts/s, from zero), both against the contacts sent so far. " + " ".join(cap))
    return made


def n_target(r):
    return r.get("target_contacts", r["contacts"])


def write_docs(results, out, src):
    docs = os.path.join(src, "docs")
    os.makedirs(docs, exist_ok=True)
    made = plots(results, out, docs)
    with open(os.path.join(docs, "benchmarks.json"), "w") as fh:
        json.dump(results, fh, indent=1, default=str)
    md = render(results, made, src)
    with open(os.path.join(docs, "benchmarks.md"), "w") as fh:
        fh.write(md)
    print("wrote %s/benchmarks.md, benchmarks.json and %d plot(s)" % (docs, len(made)), file=sys.stderr)


def when(iso):
    """results["started"] (ISO 8601, UTC) as "YYYY-MM-DD HH:MM UTC"."""
    return (iso or "?")[:16].replace("T", " ") + (" UTC" if iso else "")


def first(load):
    return load[0] if load else "?"


def figure(L, made, scenario):
    if scenario in made:
        f, title, caption = made[scenario]
        L.append("![%s](%s)" % (title, f))
        L.append("")
        L.append("*%s*" % caption)
        L.append("")


# HubSpot's limits per app and account (/work/shared/hubspot/FACTS.md, "Rate limits"):
# requests per 10 s, and per day where the plan has one
LIMITS = (("Free / Starter", 100, 250000), ("a marketplace OAuth app, per installing account", 110, None),
          ("Professional / Enterprise", 190, 625000), ("with the API limit increase add-on", 250, 1000000))


def ceiling(L, s, st):
    """The real ceiling (issue 17): HubSpot's limit per account, and what the
    worker's measured capacity (scenario 2, batch_size 100) means next to it."""
    add = L.append
    add("## The real ceiling: HubSpot's rate limit")
    add("")
    b = batch(s["2"], 100) if "2" in s else None
    if not b:
        add("HubSpot accepts 100 to 190 requests per 10 s from one app into one account (250 with the API limit")
        add("add-on): at 100 contacts per request, 1,000 to 1,900 contacts/s per HubSpot account. This run did not")
        add("drain at `batch_size` 100 (scenario 2), so it does not say how many accounts one worker can serve.")
        add("")
        return
    rate, cpu = b["contacts_per_s"], b["worker_cpu_s_per_10k"]
    per = cpu / 10000  # worker CPU seconds per contact
    conc = int(st.get("hubspot_events.max_concurrency") or 4)

    def accounts(req):
        return rate / (req * 10.0)

    def share(req):
        return req * 10.0 * per
    add("**HubSpot, not the extension, is the ceiling: it accepts 100 to 190 requests per 10 s from one app")
    add("into one account, which at 100 contacts per request is 1,000 to 1,900 contacts/s per HubSpot account.**")
    add("**One worker sent %s contacts/s in this run (to a mock HubSpot answering in 2 ms: the real round trip"
        % format(round(rate), ","))
    add("is longer, see below), enough for about %.0f accounts at their full Professional" % accounts(190))
    add("limit (%.0f at Free/Starter), each taking %.1f%% of one CPU core (%.1f%% at Free/Starter).**"
        % (accounts(100), 100 * share(190), 100 * share(100)))
    add("")
    add("The computation: the worker's capacity is scenario 2's drain at `batch_size` 100 (%s): **%s contacts/s**"
        % ("the median of %d drains" % len(b["runs"]) if len(b.get("runs", [])) > 1 else "one drain",
           format(round(rate), ",")))
    add("and **%.3f worker CPU s per 10,000 contacts** (%.1f µs per contact). An account at its full limit of L"
        % (cpu, per * 1e6))
    add("requests per 10 s sends L × 100 / 10 contacts/s; one worker serves %s / (L × 10) such accounts, and each"
        % format(round(rate), ","))
    add("takes L × 10 × %.3f / 10,000 of a core:" % cpu)
    add("")
    add("| HubSpot's limit per app and account | requests per 10 s | contacts/s at batch 100 | accounts one worker serves at that limit | worker CPU per account at that limit |")
    add("|---|---:|---:|---:|---:|")
    for name, req, _ in LIMITS:
        add("| %s | %d | %s | %s / %s = %.1f | %s × %.3f / 10,000 = %.1f%% of a core |"
            % (name, req, format(req * 10, ","), format(round(rate), ","), format(req * 10, ","), accounts(req),
               format(req * 10, ","), cpu, 100 * share(req)))
    add("")
    add("What this does not include:")
    add("")
    add("- **HubSpot's round trip.** The mock answered each request in 2 ms. The worker keeps at most")
    add("  `max_concurrency` requests in flight (%d in this run%s), so against a round trip of R ms it"
        % (conc, ", the default" if conc == 4 else "; the default is 4"))
    add("  sends at most `max_concurrency` × `batch_size` contacts per R ms: with %d and 100, %s contacts/s at"
        % (conc, format(conc * 100 * 10, ",")))
    add("  R = 100 ms and %s at R = 200 ms, about %s Professional account%s at %s limit (this run does not measure"
        % (format(conc * 100 * 5, ","), "one" if conc * 500 < 2850 else "%.0f" % (conc * 500 / 1900.0),
           "" if conc * 500 < 2850 else "s", "its" if conc * 500 < 2850 else "their"))
    add("  HubSpot's round trip). With round trips that long, the requests in flight, not the CPU, bound the")
    add("  accounts one worker serves: raise `max_concurrency` (up to 64) to serve more.")
    add("- **HubSpot's daily limit.** Each account also has a daily limit: %s requests (Free/Starter,"
        % " / ".join(format(d, ",") for _, _, d in LIMITS if d))
    add("  Professional/Enterprise, the add-on), which spread over 24 hours is %s contacts/s at 100 per"
        % " / ".join(format(round(d * 100 / 86400), ",") for _, _, d in LIMITS if d))
    add("  request. A backlog can go at the 10-second limit for hours, not all day.")
    add("- **One account per connection.** The drain is one connection; serving several accounts means one")
    add("  connection each (`hubspot_events.connections`, issue 15), each with its own token and pacing, the")
    add("  worker sharing its turns among them (scenario 6).")
    add("- **One process.** The worker is one process, so it uses at most one core: in the drain it used %.0f%%"
        % (100 * b["worker_cpu_share"]))
    add("  of one, and waited the rest of the time (for the mock's answers and for the disk).")
    add("")


def render(results, made, src):
    m = results.get("machine", {})
    s = results["scenarios"]
    L = []
    add = L.append
    c = results.get("conditions", {"fsync": "off", "mock": "lean", "vacuum_before_drain": True})
    st = c.get("settings", {})
    add("# Benchmarks")
    add("")
    add("Produced by `bash bench/run.sh`, as root (issue 6); this file, `benchmarks.json` (every figure) and the")
    add("plots are written by the run. Scale: **%s** (1 is the full size of issue 6)." % results["scale"])
    if float(results["scale"]) != 1:
        add("**A scaled-down development run: its figures are not the suite's.**")
    add("")
    add("Every figure up to the Analysis (which compares earlier runs) comes from one run (scenarios %s),"
        % ", ".join(sorted(s, key=int)))
    add("started %s and ended %s, on %s cores of %s;"
        % (when(results.get("started")), m.get("date"), m.get("cores"), m.get("cpu")))
    add("load average (1 min) %s at the start and %s at the end; `fsync = %s`, `synchronous_commit = %s`, `shared_buffers`"
        % (first(results.get("loadavg_at_start")), first(m.get("loadavg_at_end")), st.get("fsync", c.get("fsync")),
           st.get("synchronous_commit", "on"), ))
    add("%s, the mock HubSpot in %s mode. The machine, every setting and the load during each scenario:"
        % (st.get("shared_buffers", "128MB"), c.get("mock")))
    add("[The machine and the run](#the-machine-and-the-run).")
    add("")
    ceiling(L, s, st)
    add("## Results")
    add("")
    add(fmt_table(results["rows"], markdown=True))
    add("")
    add("## The machine and the run")
    add("")
    add("| | |")
    add("|---|---|")
    add("| CPU | %s |" % m.get("cpu"))
    add("| cores | %s |" % m.get("cores"))
    add("| memory | %s GB |" % m.get("memory_gb"))
    add("| kernel | Linux %s |" % m.get("kernel"))
    add("| PostgreSQL | %s%s |" % (m.get("pg"), (" (`%s`)" % m["pg_config"]) if m.get("pg_config") else ""))
    if c.get("data_directory_fs"):
        add("| the cluster's data directory | %s (a throwaway cluster in the run's work folder) |" % c["data_directory_fs"])
    add("| date | started %s, ended %s |" % (when(results.get("started")), m.get("date")))
    add("| load average (1, 5, 15 min) | %s at the start, %s at the end |"
        % (" ".join(results.get("loadavg_at_start", [])), " ".join(m.get("loadavg_at_end", []))))
    add("")
    loads = [(k, s[k]["loadavg"]) for k in sorted(s, key=int) if s[k].get("loadavg")]
    if loads:
        add("The load during each scenario (load average over 1, 5 and 15 minutes at its start and end, and its duration):")
        add("")
        add("| scenario | duration | load at the start | load at the end |")
        add("|---|---:|---|---|")
        for k, (a, b) in loads:
            add("| %s | %.0f s | %s | %s |" % (k, s[k].get("wall_s", 0), " ".join(a), " ".join(b)))
        add("")
    add("Nothing else is known to have run on the machine: the load average above says how busy it was.")
    if loads:
        add("(The benchmark's own processes, the client, the backend, the worker and the mock, keep about one")
        add("core busy, which the 1-minute figure counts.)")
    add("Absolute figures vary between machines and runs; the targets that can be are ratios measured in")
    add("the same run, and scenario 1 takes the median of %s runs per variant in rotating order."
        % s.get("1", {}).get("reps", "several"))
    add("")
    add("The conditions: `fsync = %s`, `synchronous_commit = %s` for the application's transactions,"
        % (st.get("fsync", c.get("fsync")), st.get("synchronous_commit", "on")))
    add("the outbox %s before each drain, the mock HubSpot (`test/mock_hubspot.py`) in %s mode"
        % ("vacuumed" if c.get("vacuum_before_drain") else "never vacuumed", c.get("mock")))
    add("(%s). The cluster is a throwaway one started by `test/lib.sh`, with the extension preloaded and"
        % ("every request recorded and its body checked against HubSpot's schema" if c.get("mock") == "full"
           else "`--lean`: no requests kept in memory, no schema check of bodies"))
    add("its worker serving the database `bench`. The mock's cost is measured in every drain (see scenario 2).")
    if st:
        add("The settings as the cluster ran them (`current_setting()` at the start of the run; the scenarios")
        add("then set the worker's `batch_size` and `rate_limit` as each one says):")
        add("")
        add("| setting | value |")
        add("|---|---|")
        for k, v in st.items():
            add("| `%s` | %s |" % (k, "(not set)" if v is None else v))
    else:
        add("(`max_wal_size = 4GB`; shared_buffers at its default 128 MB; `max_concurrency` 4, the default:")
        add("this run did not record the cluster's settings.)")
    add("")
    add("## Method and details")
    add("")
    if "1" in s:
        r = s["1"]
        add("### 1. Write overhead")
        add("")
        add("Three tables of the same shape (`id` identity primary key, `webinar`, `status`, `hubspot_vid`,")
        add("`checked_in`): without a trigger (bare); with `sync_attendance('event_id=webinar', 'state=status',")
        add("'vid=hubspot_vid', 'account_id:=acme', 'at=checked_in')`; and with the hand-written alternative, a")
        add("PL/pgSQL `AFTER ... FOR EACH ROW` trigger inserting the same jsonb (checked in the run:")
        add("`%s` both ways) into `hand_outbox`, created `LIKE hubspot_events.outbox INCLUDING ALL` (the same" % r["contact_sync"])
        add("columns, defaults, CHECK and all six indexes). It validates nothing and wakes nobody, so it is a")
        per_stmt = r.get("bulk_rows_per_statement", 1000)
        nstmt = -(-r["rows"] // per_stmt)
        add("lower bound for the hand-written way. %s rows per run: **bulk** is %s" % (format(r["rows"], ","),
            "one statement" if nstmt == 1 else "%d statements" % nstmt))
        add("`INSERT ... SELECT` of %s rows%s, sent by the client (the application's bulk write of issue"
            % (format(per_stmt, ","), " in its own transaction" if nstmt == 1 else " each, one transaction each"))
        add("17: a 10,000-row INSERT); **single** is")
        add("a server-side `DO` loop of single-row `INSERT ... VALUES` statements, committing every 1,000 rows")
        add("(no client round trip per row, so the figure is the server's cost). The worker is paused (its")
        add("outbox rows are not sent meanwhile); every run starts from truncated tables after a CHECKPOINT.")
        add("")
        has_cpu = "cpu_seconds" in r["bulk"]
        if has_cpu:
            add("Each run is timed twice: wall time at the client, and the CPU time of the backend that runs")
            add("the INSERTs (`/proc/<pid>/schedstat`, nanoseconds). The machine was shared, and wall time")
            add("swung with other people's load (in an earlier profiling run under heavy load the wall-time ratio")
            add("sync/hand came out 0.69x, against about 1.0x on a quieter machine), so the targets are judged")
            add("on the backend's CPU time; both are shown.")
            add("")
            add("| mode | | bare | sync_attendance | hand-written | sync / hand | sync / bare | hand / bare |")
            add("|---|---|---:|---:|---:|---:|---:|---:|")
            for mode in ("bulk", "single"):
                x = r[mode]
                add("| %s | backend CPU | %.2f s (%.1f µs/row) | %.2f s (%.1f µs/row) | %.2f s (%.1f µs/row) | %.2fx | %.2fx | %.2fx |"
                    % (mode, x["cpu_seconds"]["bare"], x["cpu_us_per_row"]["bare"], x["cpu_seconds"]["sync"], x["cpu_us_per_row"]["sync"],
                       x["cpu_seconds"]["hand"], x["cpu_us_per_row"]["hand"], x["sync_vs_hand"], x["sync_vs_bare"], x["hand_vs_bare"]))
                add("| %s | wall | %.2f s (%.1f µs/row) | %.2f s (%.1f µs/row) | %.2f s (%.1f µs/row) | %.2fx | %.2fx | %.2fx |"
                    % (mode, x["seconds"]["bare"], x["us_per_row"]["bare"], x["seconds"]["sync"], x["us_per_row"]["sync"],
                       x["seconds"]["hand"], x["us_per_row"]["hand"], x["wall_sync_vs_hand"], x["wall_sync_vs_bare"], x["wall_hand_vs_bare"]))
        else:
            add("| mode | bare | sync_attendance | hand-written | sync / hand | sync / bare | hand / bare |")
            add("|---|---:|---:|---:|---:|---:|---:|")
            for mode in ("bulk", "single"):
                x = r[mode]
                add("| %s | %.2f s (%.1f µs/row) | %.2f s (%.1f µs/row) | %.2f s (%.1f µs/row) | %.2fx | %.2fx | %.2fx |"
                    % (mode, x["seconds"]["bare"], x["us_per_row"]["bare"], x["seconds"]["sync"], x["us_per_row"]["sync"],
                       x["seconds"]["hand"], x["us_per_row"]["hand"], x["sync_vs_hand"], x["sync_vs_bare"], x["hand_vs_bare"]))
        add("")
        add("Medians of %d runs; every run (wall s%s): %s." % (r["reps"], ", then backend CPU s" if has_cpu else "", "; ".join(
            "%s %s %s%s" % (mode, v, "/".join("%.2f" % t for t in r[mode]["all"][v]),
                            (" cpu " + "/".join("%.2f" % t for t in r[mode]["cpu_all"][v])) if has_cpu else "")
            for mode in ("bulk", "single") for v in ("bare", "sync", "hand"))))
        add("")
        if "floor_vs_bare" in r["bulk"]:
            names = (("floor_all", "all the outbox's indexes (6; 3 take a pending row)"),
                     ("floor_pk", "its primary key only"),
                     ("floor_none", "no index"),
                     ("floor_intake", "(a narrow intake table instead: 7 columns, no index, no constraint)"))
            add("**The floor of the bulk write: what one outbox row per application row costs at the least.**")
            add("The same runs (rotated with the three variants above) time, for each 10,000 rows, one statement")
            add("that inserts the application's rows into the bare table and, from its `RETURNING`, their outbox")
            add("rows (the hand-written trigger's values) into a copy of the outbox: no trigger, no validation, no")
            add("lock, nothing but the two INSERTs. Backend CPU, medians of %d runs:" % r["reps"])
            add("")
            add("| the outbox copy has | backend CPU | / bare | sync_attendance / this floor |")
            add("|---|---:|---:|---:|")
            x = r["bulk"]
            for v, label in names:
                if v not in x["floor_cpu_seconds"]:
                    continue
                add("| %s | %.2f s (%.1f µs/row) | %.2fx | %.2fx |"
                    % (label, x["floor_cpu_seconds"][v], x["floor_cpu_seconds"][v] / r["rows"] * 1e6,
                       x["floor_vs_bare"][v], x["cpu_seconds"]["sync"] / x["floor_cpu_seconds"][v]))
            add("")
            # From schema 0.9.0 on the trigger writes into the intake, a partition with no index:
            # its floor is the copy with no index (the same 26 columns); before, the indexed outbox.
            version = tuple(int(v) for v in r.get("schema_version", "0.9.0").split("."))
            intake = version >= (0, 9, 0)
            floor = "floor_none" if intake else "floor_all"
            over = 100 * (x["cpu_seconds"]["sync"] / x["floor_cpu_seconds"][floor] - 1)
            if intake:
                add("Since schema 0.9.0 the trigger writes into the outbox's intake, a partition with no index")
                add("(docs/intake.md): its floor is the copy with no index, %.2fx a bare INSERT, and" % x["floor_vs_bare"][floor])
            else:
                add("With the outbox as it is (a row per contact; its primary key and the two indexes a pending row")
                add("needs, the claim's and the per-contact order's), writing the outbox rows alone, set-based, costs")
                add("%.2fx a bare INSERT of the same rows, and" % x["floor_vs_bare"][floor])
            add("`sync_attendance` costs %.2fx, %.0f%% %s that floor (%s)."
                % (x["sync_vs_bare"], abs(over), "above" if over >= 0 else "below",
                   "its validation, the order lock, the id and the row trigger's calls" if over >= 0
                   else "the trigger's direct insert skips the executor's work per statement that the floor's INSERT pays"))
            add("With all the outbox's indexes the rows cost %.2fx, with the primary key only %.2fx, and with"
                % (x["floor_vs_bare"]["floor_all"], x["floor_vs_bare"]["floor_pk"]))
            add("no index at all %.2fx: an outbox row is wider than the application's"
                % x["floor_vs_bare"]["floor_none"])
            add("(26 columns, the contact as jsonb)%s. The target, 3x, is %s the floor of the present design; %s"
                % ("; a narrow intake with no index costs %.2fx" % x["floor_vs_bare"]["floor_intake"]
                   if "floor_intake" in x["floor_vs_bare"] else "",
                   "below" if x["floor_vs_bare"][floor] > 3 else "above",
                   "no trigger, however lean, can reach it: only a narrower write can (see the Analysis)."
                   if x["floor_vs_bare"][floor] > 3 else "the trigger's own work is what stands above it."))
            add("Single-row statements have no such floor: a second statement per row (a CTE as above) pays")
            add("an executor start and end for each of its INSERTs and costs more than the trigger's direct")
            add("insert, which opens the outbox once per transaction.")
            add("")
    if "2" in s:
        r = s["2"]
        add("### 2. Drain throughput")
        add("")
        add("For each `batch_size` (1, 10, 100): with the worker paused, %s contacts are enqueued over 10" % format(r["contacts"], ","))
        add("events (`hubspot_enqueue_subscriber`, 1,000 contacts per call), the outbox is %s, the mock"
            % ("vacuumed" if results.get("conditions", {}).get("vacuum_before_drain", True)
               else "checkpointed but not vacuumed (the rows freshly committed)"))
        add("is set to answer every request 2 ms late (`delay_ms=2`) with a limit nobody reaches, and the")
        add("worker's own limiter is opened (`rate_limit` 4096 per 100 ms). Then `resume()`, and the clock runs")
        add("until no row is `pending` or `sending` (polled every 0.1 s). Requests are counted by the mock;")
        add("the worker's CPU is `utime + stime` of its process (`/proc/<pid>/stat`), SQL included (the worker")
        add("runs its SQL in its own process). The CPU is read once the worker has also vacuumed the outbox,")
        add("which it does when no row is left due after `vacuum_after` rows (10,000 by default): that vacuum is")
        add("part of its work for these contacts. A drain that is not done after %s s is stopped there, and" % int(float(os.environ.get("BENCH_DRAIN_CAP_S", "150"))))
        add("rated on what it sent.")
        add("")
        for bs, x in sorted(r["by_batch"].items(), key=lambda kv: int(kv[0])):
            if len(x.get("runs", [])) > 1:
                add("`batch_size` %s is drained %d times (the worker's CPU time varies between drains on a shared" % (bs, len(x["runs"])))
                add("machine); its row holds the median of each figure. The runs: %s."
                    % "; ".join("%.0f contacts/s, %.3f CPU s / 10,000, worker VmRSS %+.1f MB%s"
                                % (y["contacts_per_s"], y["worker_cpu_s_per_10k"], y.get("worker_vmrss_growth_kb", 0) / 1024,
                                   "" if y.get("worker_vacuumed") else " (no vacuum by the worker seen)")
                                for y in x["runs"]))
                add("A drain during which the worker's VmRSS grows costs it more: it touches shared buffers it had not")
                add("touched before, a page fault each, which a long-running worker pays once. Other spreads between")
                add("runs come from the machine (a shared virtual machine, where each system call and page fault")
                add("goes through the hypervisor).")
                add("")
        add("| batch_size | contacts | seconds | contacts/s | requests/s | worker CPU s / 10,000 contacts | worker CPU (share of a core) | mock CPU (share of a core) | mock CPU ms / request |")
        add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for bs, x in sorted(r["by_batch"].items(), key=lambda kv: int(kv[0])):
            add("| %s | %s%s | %.1f | %.0f | %.0f | %.3f | %.0f%% | %.0f%% | %.2f |"
                % (bs, format(x["contacts"], ","), " (capped)" if x["capped"] else "", x["seconds"], x["contacts_per_s"],
                   x["requests_per_s"], x["worker_cpu_s_per_10k"], 100 * x["worker_cpu_share"],
                   100 * (x["mock_cpu_share"] or 0), x["mock_cpu_ms_per_request"] or 0))
        add("")
        fl = r.get("sql_floor")
        if fl:
            w = fl["per_10k"]
            x = r["by_batch"].get("100") or r["by_batch"].get(100)
            add("**The SQL floor of a drain.** The least SQL the outbox's design runs per contact: each row")
            add("claimed (pending to sending, its attempt counted, committed before the request goes out) and")
            add("recorded (sending to sent), %d rows at a time as the worker claims them at `batch_size` 100, run"
                % fl["rows_per_claim"])
            add("by a backend on the same freshly enqueued rows with nothing else: no request, no JSON, no check")
            add("of the claimed rows, no vacuum. Backend CPU per 10,000 contacts, medians of %d:" % len(fl["runs"]["claim_due"]))
            add("")
            add("| the claim | and the record's UPDATE | runs |")
            add("|---|---:|---|")
            add("| `claim_due(800)` (the worker's, with the order rules) | %.3f s | %s |"
                % (w["claim_due"], " ".join("%.3f" % v for v in fl["runs"]["claim_due"])))
            add("| a bare `UPDATE` of the 800 first due rows by id (no order rules) | %.3f s | %s |"
                % (w["bare_updates"], " ".join("%.3f" % v for v in fl["runs"]["bare_updates"])))
            if "one_version" in w:
                add("| none: the 800 first due rows read, not changed (one row version per contact: the record's) | %.3f s | %s |"
                    % (w["one_version"], " ".join("%.3f" % v for v in fl["runs"]["one_version"])))
            add("")
            if x:
                add("The worker's whole drain cost %.3f CPU s per 10,000 contacts (above, batch_size 100); these two"
                    % x["worker_cpu_s_per_10k"])
                add("statements alone cost %.3f s (%.0f%% of it) when a client runs them: each a new heap tuple and new"
                    % (w["claim_due"], 100 * w["claim_due"] / x["worker_cpu_s_per_10k"]))
                add("entries in the primary key and in the index of its status per contact and statement. (Run by a")
                add("client, they are parsed and planned at every call and take their ids as text; the worker's")
                add("prepared statements do not pay that, so its own share of them is somewhat lower.) The SQL of")
                add("the two row versions is most of the worker's work, and the target, 0.25 s, is %s what it costs"
                    % ("below" if w["claim_due"] > 0.25 else "above"))
                add("here.")
                if "one_version" in w:
                    add("With one row version per contact (the claim changing no row) the same measure gives %.3f s."
                        % w["one_version"])
                add("")
    figure(L, made, "2")
    if "3" in s:
        r = s["3"]
        add("### 3. Commit-to-request latency")
        add("")
        add("A client commits %s single-row INSERTs into a table with the `sync_attendance` trigger, one" % format(r["commits"], ","))
        add("at a time with 20 ms of idle between them, and takes `time.time()` right after each COMMIT")
        add("returns. The mock logs every request with `time`, its wall clock when the request line was read")
        add("(before the body); both clocks are this machine's. Each contact's latency is the mock's time of")
        add("the first request holding its vid minus its commit time.")
        add("")
        add("| received | requests | min | p50 | p90 | p99 | max | mean | below 0 |")
        add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        add("| %d | %d | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %d |"
            % (r["received"], r["requests"], r["min_ms"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"], r["mean_ms"], r["negative"]))
        add("")
        add("(A latency below 0 means the request reached the mock before the client saw its COMMIT")
        add("return: the worker is woken during the commit.)")
        add("")
    figure(L, made, "3")
    if "4" in s:
        r = s["4"]
        add("### 4. Paced delivery")
        add("")
        add("The mock enforces %d requests per rolling %d ms window (`rate_limit`, `rate_window_ms`: a 429" % (r["limit"], r["window_ms"]))
        add("TEN_SECONDLY_ROLLING beyond it, with HubSpot's rate-limit headers on every answer); the worker")
        add("is set to match (`hubspot_events.rate_limit` %d, `rate_limit_interval_ms` %d), `batch_size` %d, with a" % (r["limit"], r["window_ms"], r["batch_size"]))
        add("backlog larger than the run can send. After 2 s of warm-up, the mock's accepted requests are")
        add("counted for %.0f s and compared with what the limit allows in that time; 429s are counted over" % r["seconds"])
        add("the whole run, warm-up included.")
        add("")
        add("| measured | accepted | allowed | delivered share | requests (whole run) | 429 answers | max accepted in any window |")
        add("|---:|---:|---:|---:|---:|---:|---:|")
        add("| %.1f s | %d | %.0f | %.1f%% | %d | %d (%.2f%%) | %d |"
            % (r["seconds"], r["accepted"], r["allowed"], 100 * r["delivered_share"], r["requests_total"],
               r["responses_429_total"], 100 * r["share_429"], r["max_accepted_in_window"]))
        add("")
    if "5" in s:
        r = s["5"]
        add("### 5. Stability")
        add("")
        add("%s contacts are enqueued over 100 events (worker paused), then drained at `batch_size` 100" % format(r.get("target_contacts", r["contacts"]), ","))
        add("with the mock answering at once. Once a second, the worker's `/proc/<pid>/status` is read:")
        add("`VmRSS` counts the pages of shared buffers the process has touched (it grows towards")
        add("`shared_buffers` as the worker reads more of the outbox, and is not the worker's own memory);")
        add("`RssAnon` is its private memory, where a leak would show, and is what the target is judged on.")
        add("")
        add("| | after %s contacts | at the end | growth |" % format(r["rss_first_at"] or 0, ","))
        add("|---|---:|---:|---:|")
        add("| RssAnon (private) | %.1f MB | %.1f MB | %+.1f MB |" % (r["anon_after_first_kb"] / 1024, r["anon_end_kb"] / 1024, r["anon_growth_kb"] / 1024))
        add("| VmRSS | %.1f MB | %.1f MB | %+.1f MB |" % (r["vmrss_after_first_kb"] / 1024, r["vmrss_end_kb"] / 1024, r["vmrss_growth_kb"] / 1024))
        add("")
        add("The drain itself: %s contacts in %.1f s, %.0f contacts/s, %.0f requests/s, worker %.3f CPU s per 10,000 contacts."
            % (format(r["contacts"], ","), r["seconds"], r["contacts_per_s"], r["requests_per_s"], r["worker_cpu_s_per_10k"]))
        add("")
        if r.get("capped"):
            add("**The drain did not finish**: it was stopped after %.0f s with %s of %s contacts sent, because"
                % (r["seconds"], format(r["contacts"], ","), format(r.get("target_contacts", r["contacts"]), ",")))
            add("the worker slows down as the outbox fills with sent rows (see the plot of its rate below and")
            add("the analysis); the memory figures are those of the contacts sent by then.")
            add("")
        add("Claim speed: with the worker paused, %s pending rows are added for contacts that already have" % format(r["pending_rows_during_claim"], ","))
        add("a sent row (so each row's per-contact ordering check meets that contact's history). The")
        add("baseline is the same outbox without its sent rows, in a second database, `bench_nosent`: as many")
        add("rows are written there as `sent`, then deleted and vacuumed (as this benchmark first did in the")
        add("table itself), and the same pending rows added, so that only the presence of the sent rows")
        add("differs. `hubspot_events.claim_due(400)` (the worker's claim: 4 requests of 100)")
        add("is called 50 times in each database, in turns (A B, B A, ...) so that the machine's load drifts")
        add("alike over both, each call in a transaction rolled back so that every call claims the same rows;")
        add("3 rounds of warm-up (hint bits on the new rows) are not counted. First with the table as the")
        add("drain left it (the worker's own vacuum after the backlog, and autovacuum), as the worker meets")
        add("it, the baseline likewise not vacuumed since its pending rows came; then again after `VACUUM")
        add("ANALYZE` of both. Medians:")
        add("")
        add("| table | claim_due(400) | the baseline, timed in turns | ratio |")
        add("|---|---:|---:|---:|")
        if "claim_ms_baseline_as_left" in r:
            add("| %s sent rows, as the drain left them | %.2f ms | %.2f ms | %.2fx |" % (format(r["sent_rows_during_claim"], ","), r["claim_ms_as_left"], r["claim_ms_baseline_as_left"], r["claim_ratio_as_left"]))
        add("| %s sent rows, after VACUUM ANALYZE (table %.0f MB) | %.2f ms | %.2f ms | %.2fx |" % (format(r["sent_rows_during_claim"], ","), r["outbox_bytes_with_sent"] / 1e6, r["claim_ms_with_sent"], r["claim_ms_without_sent"], r["claim_ratio"]))
        add("")
    figure(L, made, "5")
    if "6" in s:
        r = s["6"]
        add("### 6. Fairness among connections")
        add("")
        add("%d connections (issue 15), each its own HubSpot account at the mock: a hub with its own token" % r["connections"])
        add("and its own limit. One connection has a backlog of 100,000 contacts and a limit of %d requests" % r["big_limit_per_s"])
        add("per second (at the mock, and on its row in `hubspot_events.connections`); the %d others get single" % (r["connections"] - 1))
        add("new rows, one every 50 ms in turn, for %.0f s while the backlog drains. For each single row, the" % r["seconds"])
        add("time from its commit to its request at the mock; for the backlogged connection, the contacts")
        add("HubSpot accepted in that time against what its limit allows (%d requests/s of 100 contacts)." % r["big_limit_per_s"])
        add("")
        add("| single rows | p50 | p99 | max | backlogged connection | share of its limit | hubs over their limit | 429s | requests to a wrong hub |")
        add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        add("| %d of %d | %.1f ms | %.1f ms | %.1f ms | %s contacts | %.1f%% | %d | %d | %d |"
            % (r["small_received"], r["small_rows"], r["small_p50_ms"], r["small_p99_ms"], r["small_max_ms"],
               format(r["big_contacts"], ","), 100 * r["big_share"], len(r["hubs_over_limit"]), r["responses_429"],
               r["wrong_hub"]))
        add("")
        add("The worker shares each turn among the connections with due rows (round robin, each at most its")
        add("share of the claim and what its own window lets start now), so a connection's backlog costs")
        add("the others one turn at most; the backlogged connection is held to its limit by its own pacer")
        add("(%.1f%% below it here; the pacer's safety margin on the window, 50 ms of 1 s, is 5%% of it)."
            % (100 * (1 - r["big_share"])))
        add("")
    # The analysis of earlier rounds (what was changed, what it gained, what is
    # left) is written by hand in docs/benchmarks.md itself: carried over from
    # the file this run replaces, when it has one.
    previous = os.path.join(src, "docs", "benchmarks.md")
    if os.path.exists(previous):
        with open(previous) as fh:
            text = fh.read()
        at = text.find("\n## Analysis")
        if at >= 0:
            add(text[at + 1:].rstrip())
            add("")
    return "\n".join(L)


if __name__ == "__main__":
    out, src = sys.argv[1], sys.argv[2]
    with open(os.path.join(out, "results.json")) as fh:
        res = json.load(fh)
    print_table(res["rows"])
    write_docs(res, out, src)
