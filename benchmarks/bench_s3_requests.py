"""S3 requests and time of one run on the bundled sample WARC against moto's S3 server (real HTTP).

The bundled sample (``pipeline/data/sample.warc.gz``, 52 responses; ``--warc`` another file) is uploaded to a
moto server; the run reads it from ``s3://`` and writes its output to ``s3://`` through a pass-through proxy
(``babelsieve.testing.s3_server.FlakyS3Proxy``) that counts requests by method and answers every k-th request
``503 SlowDown`` (``--throttle-every 50`` = 2 %). Local engine, default stages, no network. Prints
one JSON line: requests (total, by method), throttled, seconds, the retry mode.

    python benchmarks/bench_s3_requests.py                      # no throttling
    python benchmarks/bench_s3_requests.py --throttle-every 50  # 2 % of requests throttled
    python benchmarks/bench_s3_requests.py --retry-mode standard
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--throttle-every", type=int, default=0, help="answer every k-th request 503 SlowDown (0: none)")
    ap.add_argument("--retry-mode", choices=["adaptive", "standard", "legacy"], default=None,
                    help="botocore retry mode (default: babelsieve's)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--log", help="write every request (method, path) to this file")
    ap.add_argument("--warc", default=str(ROOT / "pipeline/data/sample.warc.gz"), help="the WARC file to run on")
    args = ap.parse_args()
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(creds)
    import boto3

    from babelsieve.pipeline.core.config import load_config
    from babelsieve.pipeline.core.runner import run_pipeline
    from babelsieve.testing.s3_server import FlakyS3Proxy, MotoS3

    server = MotoS3()
    client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="inputs")
    client.create_bucket(Bucket="output")
    client.put_object(Bucket="inputs", Key="sample.warc.gz", Body=Path(args.warc).read_bytes())
    proxy = FlakyS3Proxy(server.port, every=args.throttle_every)
    opts = {"endpoint_url": proxy.endpoint, "key": "testing", "secret": "testing"}
    if args.retry_mode:
        opts["config_kwargs"] = {"retries": {"max_attempts": 10, "mode": args.retry_mode}}
    cfg = load_config(None, inputs=["s3://inputs/sample.warc.gz"], output="s3://output/run", engine="local",
                      sets=["extract.url_filter=false", f"engine_options.workers={args.workers}"])
    cfg.storage_options = opts
    t0 = time.perf_counter()
    summary = run_pipeline(cfg, show_progress=False)
    seconds = time.perf_counter() - t0
    print(json.dumps({"requests": proxy.requests, "by_method": dict(sorted(proxy.by_method.items())),
                      "throttled": proxy.throttled, "seconds": round(seconds, 1), "failed": summary.failed_tasks,
                      "tasks": {s.stage: s.tasks for s in summary.stages},
                      "retry_mode": args.retry_mode or "default", "throttle_every": args.throttle_every}))
    if args.log:
        Path(args.log).write_text("".join(f"{m} {p}\n" for m, p in proxy.log))
    proxy.stop()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
