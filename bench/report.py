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
    subprocess.run(["gnuplot"], input=script.encode(), check=True)
    return True


def plots(results, out, docs):
    made = []
    s = results["scenarios"]
    if "2" in s:
        data = os.path.join(out, "drain.dat")
        with open(data, "w") as fh:
            for i, (bs, r) in enumerate(sorted(s["2"]["by_batch"].items(), key=lambda kv: int(kv[0]))):
                fh.write("%d %s %.1f %.1f %.4f\n" % (i, bs, r["contacts_per_s"], r["requests_per_s"], r["worker_cpu_s_per_10k"]))
        png = os.path.join(docs, "bench-drain.png")
        if gnuplot("""
set terminal pngcairo size 900,520 font "sans,11" noenhanced
set output "%s"
set title "Drain throughput by batch_size (mock answering in 2 ms, no rate limit)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set yrange [10:*]
set ylabel "per second (log scale)"
set y2label "worker CPU s per 10,000 contacts"
set logscale y2
set y2tics
set ytics nomirror
set xlabel "batch_size"
set key top left
set grid ytics
plot "%s" using 3:xtic(2) title "contacts/s", "" using 4 title "requests/s", \\
     "" using 1:5 axes x1y2 with linespoints lw 2 pt 7 title "worker CPU s / 10,000 contacts (right)"
""" % (png, data)):
            made.append(("bench-drain.png", "Drain throughput and the worker's CPU cost by batch size (scenario 2)"))
    lat = os.path.join(out, "latency_ms.txt")
    if "3" in s and os.path.exists(lat):
        png = os.path.join(docs, "bench-latency.png")
        n = s["3"]["received"]
        if gnuplot("""
set terminal pngcairo size 900,520 font "sans,11" noenhanced
set output "%s"
set title "Commit-to-request latency, %d single-row commits at idle (cumulative)"
set xlabel "ms from COMMIT returning to the mock receiving the request"
set ylabel "share of commits"
set yrange [0:1]
set grid
set key bottom right
set arrow from 5, graph 0 to 5, graph 1 nohead dt 2 lc rgb "#888888"
set arrow from 25, graph 0 to 25, graph 1 nohead dt 2 lc rgb "#888888"
set label "p50 target" at 5, 0.1 offset 0.5,0
set label "p99 target" at 25, 0.1 offset 0.5,0
set xrange [*:30]
plot "%s" using 1:($0+1)/%d with steps lw 2 title "commits"
""" % (png, n, lat, n)):
            made.append(("bench-latency.png", "Commit-to-request latency distribution (scenario 3)"))
    rss = os.path.join(out, "rss.txt")
    if "5" in s and os.path.exists(rss) and os.path.getsize(rss) > 0:
        png = os.path.join(docs, "bench-rss.png")
        if gnuplot("""
set terminal pngcairo size 900,520 font "sans,11" noenhanced
set output "%s"
set title "The worker's memory while it sends %d contacts (scenario 5)"
set xlabel "contacts sent"
set ylabel "MB"
set grid
set key top left
set format x "%%.0s%%c"
set y2label "contacts/s (10 s average)"
set y2tics
set ytics nomirror
prev_t = 0; prev_n = 0
rate(t, n) = (r = (t > prev_t ? (n - prev_n) / (t - prev_t) : 0), prev_t = t, prev_n = n, r)
plot "%s" using 2:($3/1024) with lines lw 2 title "VmRSS, MB (includes shared buffers touched)", \\
     "" using 2:($4/1024) with lines lw 2 title "RssAnon, MB (private memory)", \\
     "" every 10 using 2:(rate($1, $2)) axes x1y2 with lines lw 2 title "sending rate, contacts/s (right)"
""" % (png, s["5"]["contacts"], rss)):
            made.append(("bench-rss.png", "The worker's resident memory over the 1,000,000-contact run (scenario 5)"))
    return made


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


def render(results, made, src):
    m = results.get("machine", {})
    s = results["scenarios"]
    L = []
    add = L.append
    add("# Benchmarks")
    add("")
    add("Produced by `bash bench/run.sh`, as root (issue 6); this file, `benchmarks.json` (every figure) and the")
    add("plots are written by the run. Scale: **%s** (1 is the full size of issue 6)." % results["scale"])
    add("")
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
    add("| date | %s |" % m.get("date"))
    add("| load average (1, 5, 15 min) | %s at the start, %s at the end |"
        % (" ".join(results.get("loadavg_at_start", [])), " ".join(m.get("loadavg_at_end", []))))
    add("")
    add("Nothing else is known to have run on the machine: the load average above says how busy it was.")
    add("Absolute figures vary between machines and runs; the targets that can be are ratios measured in")
    add("the same run, and scenario 1 takes the median of %s runs per variant in rotating order."
        % s.get("1", {}).get("reps", "several"))
    add("")
    c = results.get("conditions", {"fsync": "off", "mock": "lean", "vacuum_before_drain": True})
    add("The conditions: `fsync = %s`, `synchronous_commit = on` for the application's transactions,"
        % c.get("fsync"))
    add("the outbox %s before each drain, the mock HubSpot (`test/mock_hubspot.py`) in %s mode"
        % ("vacuumed" if c.get("vacuum_before_drain") else "never vacuumed", c.get("mock")))
    add("(%s). The cluster is a throwaway one started by `test/lib.sh` (`max_wal_size = 4GB`;"
        % ("every request recorded and its body checked against HubSpot's schema" if c.get("mock") == "full"
           else "`--lean`: no requests kept in memory, no schema check of bodies"))
    add("shared_buffers at its default 128 MB), with the extension preloaded and its worker serving the")
    add("database `bench` (`max_concurrency` 4, the default). The mock's cost is measured in every drain")
    add("(see scenario 2).")
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
        add("`INSERT ... SELECT` of %s rows%s, one transaction each, sent by the client (the application's"
            % (format(per_stmt, ","), "" if nstmt == 1 else " each"))
        add("bulk write of issue 17: a 10,000-row INSERT); **single** is")
        add("a server-side `DO` loop of single-row `INSERT ... VALUES` statements, committing every 1,000 rows")
        add("(no client round trip per row, so the figure is the server's cost). The worker is paused (its")
        add("outbox rows are not sent meanwhile); every run starts from truncated tables after a CHECKPOINT.")
        add("")
        has_cpu = "cpu_seconds" in r["bulk"]
        if has_cpu:
            add("Each run is timed twice: wall time at the client, and the CPU time of the backend that runs")
            add("the INSERTs (`/proc/<pid>/schedstat`, nanoseconds). The machine was shared, and wall time")
            add("swung with other people's load (in a profiling run under heavy load the wall-time ratio")
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
        add("(the 5% below it is the pacer's safety margin on the window, 50 ms of 1 s).")
        add("")
    if made:
        add("## Plots")
        add("")
        for f, title in made:
            add("![%s](%s)" % (title, f))
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
