#!/usr/bin/env python3
"""The mock's CPU per request: a bench helper, not part of the mock.

Starts test/mock_hubspot.py as the tests do (token file, --log, --seed 42;
extra arguments after -- go to the mock, e.g. -- --lean), sends N subscriber
upserts of a batch size over keep-alive connections and reports the mock's
CPU (utime + stime from /proc/<pid>/stat) per request:

    python3 test/mock_hubspot/cpubench.py [--requests 2000] [--batch 1,10,100]
                                          [--conns 1] [--api 2026-09|v3] [-- mock args]
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MOCK = os.path.join(os.path.dirname(HERE), "mock_hubspot.py")
TOKEN = "pat-bench-0123456789abcdef"


def cpu_s(pid):
    """(user, system) CPU seconds of pid."""
    with open("/proc/%d/stat" % pid) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def body_of(batch, start):
    inputs = [{"vid": start + i, "interactionDateTime": 1767225600000 + i, "properties": {}}
              for i in range(batch)]
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


def send(port, path, bodies, errors):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json",
               "Accept": "application/json", "User-Agent": "hubspot_events/0.6.0 (bench)"}
    for body in bodies:
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 204:
            errors.append(resp.status)
    conn.close()


def run(args, mock_args, work):
    token_file = os.path.join(work, "token")
    with open(token_file, "w") as fh:
        fh.write(TOKEN + "\n")
    port_file = os.path.join(work, "mock.port")
    proc = subprocess.Popen([sys.executable, MOCK, "--host", "127.0.0.1", "--port", "0",
                             "--port-file", port_file, "--token-file", token_file,
                             "--log", os.path.join(work, "mock_requests.jsonl"), "--seed", "42"] + mock_args,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists(port_file):
                break
            time.sleep(0.05)
        port = int(open(port_file).read())
        if args.api == "v3":
            root = "/marketing/v3/marketing-events"
        else:
            root = "/marketing/marketing-events/" + args.api
        path = root + "/events/bench-event/register/upsert?externalAccountId=bench-account"
        results = []
        for batch in [int(b) for b in args.batch.split(",")]:
            bodies = [body_of(batch, 1000 * n) for n in range(args.requests)]
            send(port, path, bodies[:20], [])  # warm up
            per = [bodies[i::args.conns] for i in range(args.conns)]
            errors = []
            (user0, sys0), t0 = cpu_s(proc.pid), time.monotonic()
            threads = [threading.Thread(target=send, args=(port, path, p, errors)) for p in per]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            (user1, sys1), wall = cpu_s(proc.pid), time.monotonic() - t0
            cpu = (user1 - user0) + (sys1 - sys0)
            results.append((batch, cpu, wall, errors))
            print("batch %3d: %d requests, mock CPU %.3f ms/request (user %.3f, system %.3f), %.0f requests/s%s" % (
                batch, args.requests, 1000 * cpu / args.requests, 1000 * (user1 - user0) / args.requests,
                1000 * (sys1 - sys0) / args.requests, args.requests / wall,
                ", %d not 204: %s" % (len(errors), sorted(set(errors))) if errors else ""), flush=True)
        return 1 if any(r[3] for r in results) else 0
    finally:
        proc.terminate()
        proc.wait()


def main():
    argv = sys.argv[1:]
    mock_args = []
    if "--" in argv:
        mock_args = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--batch", default="1,10,100")
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--api", default="2026-09")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mock_cpubench.") as work:
        return run(args, mock_args, work)


if __name__ == "__main__":
    sys.exit(main())
