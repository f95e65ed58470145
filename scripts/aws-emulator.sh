#!/usr/bin/env bash
# Sourced by scripts/test.sh: starts moto server (the AWS-API emulator) on a free loopback
# port, points the AWS SDK at it, and stops it when the calling shell exits.
aws_emulator_start() {
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  .venv/bin/moto_server -H 127.0.0.1 -p "$port" > "${TMPDIR:-/tmp}/tidings-moto-$port.log" 2>&1 &
  AWS_EMULATOR_PID=$!
  trap 'kill "$AWS_EMULATOR_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/moto-api/" > /dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/moto-api/" > /dev/null || { echo "moto server did not start"; cat "${TMPDIR:-/tmp}/tidings-moto-$port.log"; return 1; }
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  unset AWS_PROFILE AWS_SESSION_TOKEN
  echo "AWS-API emulator (moto server) on $AWS_ENDPOINT_URL"
}
