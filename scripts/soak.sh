#!/usr/bin/env bash
# The long runs, for before a release (not in the test command), at their full size: 10,000
# publishes through SQS queues and EventBridge on the deployed stack under emulation (IAM
# enforced), every delivery counted; then the rate-limit and ordering runs (5,000 messages at
# 50/s; 10,000 ordered events through three kill -9s; the deployed stack's at twice the test
# command's size). About 20 minutes on two cores after the test command has built the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
cargo build --workspace --locked
source scripts/aws-emulator.sh
aws_emulator_start
export TIDINGS_PYTHON="$PWD/.venv/bin/python"
TIDINGS_PUBLISHES=10000 cargo test -p tidings-tests --test it --locked publish_sources -- --nocapture
TIDINGS_SOAK=1 cargo test -p tidings-tests --test it --locked delivery_options -- --nocapture
.venv/bin/python tests/iam_audit.py
