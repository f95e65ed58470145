#!/usr/bin/env bash
# Benchmarks (figures printed, nothing asserted): local throughput, latency and CPU of the
# embedded stack, and AWS API calls per event against the AWS-API emulator. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
source scripts/aws-emulator.sh
aws_emulator_start
# tidings serve (the release binary) through HTTP, and AWS calls per event against the emulator.
cargo build --release -p tidings-cli
RUST_LOG=warn TIDINGS_BIN="$PWD/target/release/tidings" cargo bench -p tidings-tests --bench delivery
# The anchors' harness beside our own client: wrk -t1 -c16 publishing and one Python uvloop
# receiver, on the same cores as Tidings; with Tidings' CPU-seconds per 1,000 deliveries.
command -v wrk > /dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
.venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-bench.txt
.venv/bin/python scripts/bench_wrk.py target/release/tidings --runs 2
# Delivery isolation through HTTP against the real binary: a healthy tenant beside a timing-out one.
python3 scripts/bench_isolation.py target/release/tidings
# The same on the Lambda path: the deployed stack under emulation, the function binaries built
# beside the benchmark (release), the Lambda Runtime API emulator from the virtualenv.
cargo build --release -p tidings-subscriptions -p tidings-ingest -p tidings-delivery
TIDINGS_PYTHON="$PWD/.venv/bin/python" RUST_LOG=warn cargo bench -p tidings-tests --bench lambda_isolation
# Rate limits and ordered delivery on both hosts: delivered rate against the limit, ordered
# throughput per key and overall.
TIDINGS_PYTHON="$PWD/.venv/bin/python" RUST_LOG=warn TIDINGS_BIN="$PWD/target/release/tidings" \
  cargo bench -p tidings-tests --bench shaping
# The local store's size under the retention purge.
python3 scripts/bench_retention.py target/release/tidings 20000
# The Lambda functions built as `sam build` builds them (from functions/, whose
# .cargo/config.toml makes release builds size-first), for this machine's architecture, in a
# target directory of their own so the speed-first builds above stay cached.
(cd functions && CARGO_TARGET_DIR="$PWD/../target/size-first" cargo build --release \
  -p tidings-subscriptions -p tidings-ingest -p tidings-delivery)
size() { python3 -c 'import os, sys; print("%-40s %6.1f MB" % (sys.argv[1], os.path.getsize(sys.argv[2]) / 1e6))' "$1" "$2"; }
for bin in tidings-subscriptions tidings-ingest tidings-delivery; do
  size "$bin (x86_64)" "target/size-first/release/$bin"
done
size "tidings (x86_64, speed-first)" target/release/tidings
# The arm64 bootstraps, when `sam build` has made them (TIDINGS_SAM_BUILD=1 scripts/test.sh).
for fn in SubscriptionsFunction IngestFunction DeliveryFunction; do
  if [ -f ".aws-sam/build/$fn/bootstrap" ]; then size "$fn bootstrap (arm64)" ".aws-sam/build/$fn/bootstrap"; fi
done
# Each Lambda function's init time, peak memory and invocation time, as deployed (size-first).
.venv/bin/python scripts/measure_functions.py --bins target/size-first/release
