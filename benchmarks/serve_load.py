"""How `platform serve` holds up under concurrent clients: requests/s, p50/p99 latency, errors.

Run from the repository root::

    .venv/bin/python benchmarks/serve_load.py                       # 8 clients for 60 s
    .venv/bin/python benchmarks/serve_load.py --clients 16 --seconds 30 --server-workers 2

It builds the same default-shaped bundle as screen_speed.py (10,000 banned hashes with their DCT hashes and 21
crop hashes each, as many as authority publish writes; the first 100 are hashes of the images sent, so some
requests match), ingests it into a throw-away database, starts the installed `platform serve` on a free port,
and runs N clients, each sending the generated 128x128 JPEG crops one after another to POST /v1/screen over
one keep-alive connection, for a fixed time. An error is any answer other than 200 with a verdict, or a failed
connection. As an anchor it first times the same files screened in-process, one batch after another, as
`platform screen` runs them."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screen_speed import CROPS_PER_IMAGE, make_store, small_images  # noqa: E402  (the same images and bundle)

from vetohash.files import image_files  # noqa: E402
from vetohash_platform.active import Status, stored_bundles  # noqa: E402
from vetohash_platform.screening import Screener, Upload  # noqa: E402
from vetohash_platform.store import Store  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"platform serve exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("platform serve never became ready")


class Client(threading.Thread):
    """Sends the images in turn, from its own offset, until the deadline; records latencies and outcomes."""

    def __init__(self, port: int, bodies: list[bytes], offset: int, deadline: float) -> None:
        super().__init__(daemon=True)
        self.port, self.bodies, self.offset, self.deadline = port, bodies, offset, deadline
        self.latencies: list[float] = []
        self.verdicts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        i = self.offset
        while time.monotonic() < self.deadline:
            body = self.bodies[i % len(self.bodies)]
            i += 1
            start = time.perf_counter()
            try:
                connection.request("POST", "/v1/screen", body=body, headers={"Content-Type": "image/jpeg"})
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as error:
                self.errors[type(error).__name__] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                continue
            self.latencies.append(time.perf_counter() - start)
            if response.status != 200:
                self.errors[f"HTTP {response.status}"] += 1
            else:
                self.verdicts[json.loads(answer)["verdict"]] += 1
        connection.close()


def percentile(sorted_values: list[float], share: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seconds", type=float, default=60, help="how long the clients send (default 60)")
    parser.add_argument("--images", type=Path, help="folder of images (default: 1,000 generated crops)")
    parser.add_argument("--count", type=int, default=1000, help="images to send in turn (default 1000)")
    parser.add_argument("--banned", type=int, default=10_000, help="hashes in the bundle (default 10000)")
    parser.add_argument("--server-workers", type=int, default=1, help="platform serve --workers (default 1)")
    args = parser.parse_args()

    paths = image_files([args.images])[: args.count] if args.images else small_images(args.count)
    bodies = [p.read_bytes() for p in paths]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = Store.open(make_store(folder, paths, args.banned, plain=False, crops=CROPS_PER_IMAGE))
        screener = Screener([s for s in stored_bundles(store) if s.status is Status.ACTIVE])
        uploads = [Upload(str(p), data=b) for p, b in zip(paths, bodies, strict=True)]
        list(screener.run(uploads[:64]))  # warm-up
        start = time.perf_counter()
        list(screener.run(uploads))
        in_process = len(uploads) / (time.perf_counter() - start)
        store.close()
        del screener

        port = free_port()
        env = dict(os.environ, VETOHASH_DB=str(folder / "platform.db"))
        script = Path(sys.executable).parent / "platform"
        log = (folder / "serve.log").open("wb")
        process = subprocess.Popen([str(script), "serve", "--port", str(port), "--workers",
                                    str(args.server_workers)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(port, process)
            deadline = time.monotonic() + args.seconds
            clients = [Client(port, bodies, i * len(bodies) // args.clients, deadline) for i in range(args.clients)]
            started = time.perf_counter()
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            elapsed = time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()

    latencies = sorted(t for c in clients for t in c.latencies)
    verdicts = sum((c.verdicts for c in clients), Counter())
    errors = sum((c.errors for c in clients), Counter())
    answered = sum(verdicts.values())
    print(f"{args.clients} clients for {args.seconds:g} s against `platform serve --workers {args.server_workers}`: "
          f"{len(bodies)} images ({'from ' + str(args.images) if args.images else 'generated 128x128 JPEG crops'}),"
          f" bundle of {args.banned} hashes with DCT hashes and {CROPS_PER_IMAGE} crop hashes each, {os.cpu_count()} CPUs")
    print()
    print("| what | figure |")
    print("|---|---:|")
    print(f"| requests answered 200 | {answered:,} |")
    print(f"| requests/s | {answered / elapsed:,.1f} |")
    print(f"| latency p50 | {1000 * percentile(latencies, 0.50):,.0f} ms |")
    print(f"| latency p99 | {1000 * percentile(latencies, 0.99):,.0f} ms |")
    print(f"| errors | {sum(errors.values())}{' (' + ', '.join(f'{k}: {v}' for k, v in errors.items()) + ')' if errors else ''} |")
    print(f"| verdicts | {', '.join(f'{k} {v}' for k, v in sorted(verdicts.items()))} |")
    print(f"| anchor: the same files screened in-process, images/s | {in_process:,.1f} |")


if __name__ == "__main__":
    main()
