#!/usr/bin/env bash
# The one command that runs every test. It installs what it needs and starts (and stops)
# whatever servers the tests use, so it passes on a fresh machine; CI calls it via .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> [%ds] %s\n' "$SECONDS" "$*"; }

# System tools the black-box tests call.
missing=()
for tool in curl python3 node npm chromium; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq "${missing[@]/node/nodejs}"
fi

step "Python tools (moto server, cfn-lint, SAM translator, cargo-lambda, standardwebhooks, schemathesis) into .venv, beside the build"
if ! python3 -m venv .venv 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv .venv
fi
# pip waits on the network and the build on the CPU: they overlap, and the steps that need
# the tools wait for pip after the build.
.venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt > .venv/pip-install.log 2>&1 &
pip_install=$!

step "structure: no import cycles in the core crate, file by file, and folder by folder but the router's"
python3 scripts/import_graph.py --check
python3 scripts/import_graph.py --top --check

# One profile (dev) for build, lint and tests, so nothing is compiled twice.
step "build"
cargo build --workspace --locked

step "Python tools installed"
wait "$pip_install" || { cat .venv/pip-install.log; exit 1; }

step "SAM template: cfn-lint and the checks against the code"
.venv/bin/cfn-lint infra/template.yaml
.venv/bin/python tests/template_check.py

step "AWS-API emulator: its SQS queues stay whole under concurrent sends and deletes"
.venv/bin/python tests/emulator_check.py

step "format"
cargo fmt --all --check

step "the portal's script: ESLint (recommended rules, pinned in tests/lint)"
(cd tests/lint && npm ci --no-audit --no-fund --loglevel=error)
tests/lint/node_modules/.bin/eslint --max-warnings 0 --config tests/lint/eslint.config.js shared/portal/app.js

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests: unit, black-box on tidings serve, and e2e (the AWS adapters and the whole deployed stack against the AWS-API emulator)"
source scripts/aws-emulator.sh
aws_emulator_start
# The independent Standard Webhooks verifier (PyPI standardwebhooks) runs in the venv.
export TIDINGS_PYTHON="$PWD/.venv/bin/python"
# Plain `cargo test` skips the e2e tier (ignored: it needs the emulator and the venv); here it
# runs, all but the publish-sources run, which loads the emulator: alone after. The soak tier is
# scripts/soak.sh's.
cargo test --workspace --locked -- --include-ignored --skip soak --skip e2e_publish_sources

step "1,500 publishes through SQS queues and EventBridge on the deployed stack (alone: it keeps the emulator busy; 10,000 in scripts/soak.sh)"
# The whole workspace, as above, so its features are the same and nothing is compiled again.
cargo test --workspace --locked e2e_publish_sources -- --include-ignored --skip soak

step "IAM: every AWS call in the code is granted to a role, and every call each function made under its role was allowed (the emulator's audit)"
.venv/bin/python tests/iam_audit.py

step "README walk-through against tidings serve"
bash tests/walkthrough.sh

step "Receiver snippets of the README (Python, Node) against a real delivery"
(cd tests/receivers && npm ci --no-audit --no-fund --loglevel=error)
.venv/bin/python tests/receivers_check.py

step "OpenAPI: the served document validated, then schemathesis on every operation against tidings serve"
.venv/bin/python tests/openapi_check.py

step "The portal in a real browser (Debian's chromium driven by Playwright) against tidings serve"
.venv/bin/python tests/portal_browser.py

# `sam build` cross-compiles the three functions for arm64 in release mode: a second build
# profile that takes about 10 minutes cold on two cores, so it runs on request only.
if [ "${TIDINGS_SAM_BUILD:-0}" = "1" ]; then
  step "sam build (release, arm64, cargo-lambda)"
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-sam.txt
  rustup target add aarch64-unknown-linux-gnu
  PATH="$PWD/.venv/bin:$PATH" .venv/bin/sam build
fi
step "done"
