#!/usr/bin/env bash
# Sourced by scripts/test.sh: starts the AWS-API emulator (moto server) on free loopback ports,
# points the AWS SDKs at it, and stops it when the calling shell exits. SQS gets a moto process
# of its own (AWS_ENDPOINT_URL_SQS, which the Rust SDK and boto3 both honour): one moto process
# serves requests one at a time on one core, and the deployed stack's tests keep SQS busiest.
# It runs through scripts/moto_server.py: moto's server made no kinder than AWS — each function's
# calls held against its template role, SQS handing messages out in no fixed order and capping
# messages in flight, each SQS delete holding its queue's lock (plain moto's deletes race its
# sends and other deletes).
aws_emulator_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

aws_emulator_serve() {
  local port="$1"
  .venv/bin/python scripts/moto_server.py -H 127.0.0.1 -p "$port" > "${TMPDIR:-/tmp}/tidings-moto-$port.log" 2>&1 &
  AWS_EMULATOR_PIDS+=("$!")
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/moto-api/" > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "moto server did not start"; cat "${TMPDIR:-/tmp}/tidings-moto-$port.log"; return 1
}

aws_emulator_start() {
  AWS_EMULATOR_PIDS=()
  trap 'kill "${AWS_EMULATOR_PIDS[@]}" 2>/dev/null || true' EXIT
  local port sqs_port
  port="$(aws_emulator_port)"
  sqs_port="$(aws_emulator_port)"
  aws_emulator_serve "$port" || return 1
  aws_emulator_serve "$sqs_port" || return 1
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$sqs_port"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  export AWS_EC2_METADATA_DISABLED=true
  unset AWS_PROFILE AWS_SESSION_TOKEN
  echo "AWS-API emulator (moto server) on $AWS_ENDPOINT_URL, SQS on $AWS_ENDPOINT_URL_SQS"
}
