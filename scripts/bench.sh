#!/usr/bin/env bash
# Benchmarks (figures printed, nothing asserted): local throughput and latency of the
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
# Delivery isolation through HTTP against the real binary: a healthy tenant beside a timing-out one.
python3 scripts/bench_isolation.py target/release/tidings
# The local store's size under the retention purge.
python3 scripts/bench_retention.py target/release/tidings 20000
# Each Lambda function's init time, peak memory and invocation time, release build.
cargo build --release -p tidings-subscriptions -p tidings-ingest -p tidings-delivery
# Binary sizes (this machine's architecture; `sam build` makes the arm64 bootstraps).
for bin in tidings-subscriptions tidings-ingest tidings-delivery tidings; do
  python3 -c 'import os, sys; print("%-22s %6.1f MB" % (sys.argv[1], os.path.getsize(sys.argv[2]) / 1e6))' "$bin" "target/release/$bin"
done
.venv/bin/python scripts/measure_functions.py --profile release
