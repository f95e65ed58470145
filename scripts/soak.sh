#!/usr/bin/env bash
# The long runs, for before a release (not in the test command): the soak tier of the tests
# (every test whose path has `soak`: 10,000 publishes through SQS queues and EventBridge on the
# deployed stack under emulation, IAM enforced, every delivery counted; 5,000 messages at a
# 50/s limit; 10,000 ordered events through three kill -9s; ordered delivery and 1,000 long
# waits on the deployed stack), one at a time so none loads another's figures; then the
# emulator's audit of those runs, and the benchmarks (scripts/bench.sh: throughput, isolation
# and rate limits on both hosts, in release builds). `--no-bench` stops after the audit. About
# 49 minutes from a fresh clone on two cores, 20 without the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> [%ds] %s\n' "$SECONDS" "$*"; }
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
step "build"
cargo build --workspace --locked
step "the soak tier, one test at a time"
(
  source scripts/aws-emulator.sh
  aws_emulator_start
  export TIDINGS_PYTHON="$PWD/.venv/bin/python"
  cargo test --workspace --locked soak -- --ignored --nocapture --test-threads 1
  step "IAM: every call each function made under its role was allowed (the emulator's audit)"
  .venv/bin/python tests/iam_audit.py
)
if [ "${1:-}" != "--no-bench" ]; then
  step "benchmarks (scripts/bench.sh)"
  bash scripts/bench.sh
fi
step "done"
