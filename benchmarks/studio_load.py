"""Studio under load: concurrent one-line writes while the page keeps loading.

    python benchmarks/studio_load.py [--requests 10] [--port 8765] [--stream]

Starts `writemate serve` on 127.0.0.1 (only), waits until it answers, then
sends ``--requests`` write requests of one line each at once (streamed with
``--stream``, else plain SVG), and meanwhile loads the page (`GET /`) every
0.2 s until the last write is done. Prints JSON: each write's seconds, how
many failed, the slowest and median page load, the first streamed event of
each write (with ``--stream``), the machine and the CPU time the hypervisor
took for other machines meanwhile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from common import cpu_times, machine, steal_percent

TEXTS = ["The quick brown fox jumps over", "Please meet me at noon", "Dear Ada, thank you", "See you on Friday at six",
         "Writemate turns text into ink", "A short note to say hello", "Remember the milk and bread", "Happy birthday, Sam!",
         "Call me when you land", "Back in five minutes"]


def wait_until_up(base: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited ({server.returncode})")
        try:
            if httpx.get(base + "/api/styles", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    sys.exit("the server did not answer in time")


def write(base: str, i: int, stream: bool) -> dict:
    body = {"text": TEXTS[i % len(TEXTS)], "seed": i}
    start = time.perf_counter()
    first = None
    try:
        if stream:
            with httpx.stream("POST", base + "/api/write/stream", json=body, timeout=300) as r:
                ok = r.status_code == 200
                last = None
                for line in r.iter_lines():
                    event = json.loads(line)
                    if first is None and event["event"] == "points":
                        first = time.perf_counter() - start
                    last = event["event"]
                ok = ok and last == "page"
        else:
            r = httpx.post(base + "/api/write", json=body, timeout=300)
            ok = r.status_code == 200 and "<path" in r.text
    except httpx.HTTPError:
        ok = False
    return {"seconds": round(time.perf_counter() - start, 2), "ok": ok, "first_points_s": first and round(first, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--stream", action="store_true", help="use the streamed write, as the page does")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen([sys.executable, "-m", "writemate", "serve", "--port", str(args.port)], stderr=subprocess.DEVNULL)
    try:
        wait_until_up(base, server)
        httpx.post(base + "/api/write", json={"text": "warm up"}, timeout=120)
        before = cpu_times()
        loads: list[float] = []
        failed_loads: list[float] = []
        done = threading.Event()

        def load_page() -> None:
            while not done.is_set():
                start = time.perf_counter()
                ok = httpx.get(base + "/", timeout=30).status_code == 200
                (loads if ok else failed_loads).append(time.perf_counter() - start)
                time.sleep(0.2)

        watcher = threading.Thread(target=load_page)
        watcher.start()
        start = time.perf_counter()
        with ThreadPoolExecutor(args.requests) as pool:
            results = list(pool.map(lambda i: write(base, i, args.stream), range(args.requests)))
        wall = time.perf_counter() - start
        done.set()
        watcher.join()
        loads.sort()
        print(json.dumps({
            "machine": machine(2),
            "requests": args.requests,
            "stream": args.stream,
            "failed": sum(not r["ok"] for r in results),
            "write_seconds": [r["seconds"] for r in results],
            "first_points_seconds": [r["first_points_s"] for r in results] if args.stream else None,
            "all_done_seconds": round(wall, 2),
            "page_loads": len(loads),
            "page_loads_failed": len(failed_loads),
            "page_load_max_s": round(loads[-1], 3) if loads else None,
            "page_load_median_s": round(loads[len(loads) // 2], 3) if loads else None,
            "cpu_steal_percent": steal_percent(before, cpu_times()),
        }, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
