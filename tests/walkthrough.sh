#!/usr/bin/env bash
# Runs every README block marked for the walk-through (Zettle, Metro, Lagerkoll in JSON and XML,
# publishing, verify, attempts, replay, a portal link), in order and exactly as written, against a real
# `tidings serve` (the binary built by `cargo build`), and checks what they printed and what
# they left behind.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin_dir="${TIDINGS_BIN_DIR:-$root/target/debug}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${TIDINGS_WALKTHROUGH_KEEP:-}" ] && cp -r "$work" "$TIDINGS_WALKTHROUGH_KEEP"; rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port="$(free_port)"
receiver_port="$(free_port)"

# The walk-through blocks, in order, with the ports moved to free ones.
sed -n '/<!-- walkthrough:start -->/,/<!-- walkthrough:end -->/p' "$root/README.md" \
  | grep -v -e '^<!--' -e '^```' \
  | sed -e "s/127.0.0.1:8080/127.0.0.1:$api_port/g" -e "s/127.0.0.1:9000/127.0.0.1:$receiver_port/g" \
  > "$work/walkthrough.sh"
grep -q 'keys create' "$work/walkthrough.sh" || { echo "walk-through block not found in README.md"; exit 1; }

cd "$work"
export PATH="$bin_dir:$PATH"
python3 "$root/scripts/receiver.py" "$receiver_port" --save received > receiver.log 2>&1 &
pids+=($!)
tidings serve --listen "127.0.0.1:$api_port" > serve.log 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if grep -q "listening" serve.log && grep -q "listening" receiver.log; then break; fi
  sleep 0.1
done

bash -euo pipefail walkthrough.sh > out.txt 2>&1 || { echo "walk-through failed:"; cat out.txt; cat serve.log; exit 1; }

fail() { echo "walk-through: $1"; echo "--- output"; cat out.txt; echo "--- receiver"; cat receiver.log; exit 1; }
grep -q '"signingKey":"[A-Za-z0-9]\{64\}"' out.txt || fail "create did not return a 64-character signingKey"
grep -q '"status":"ACTIVE"' out.txt || fail "the subscription is not ACTIVE"
grep -q '^\[{"uuid":"f02f80f8-8f35-11eb-8dcd-0242ac130003"' out.txt || fail "list did not show the subscription"
grep -q '"errorType":"BAD_REQUEST".*CardPaymentInvalid' out.txt || fail "the unsupported event was not refused"
grep -q '"eventName":"TestMessage"' receiver.log || fail "the receiver got no TestMessage"
grep -q 'x-izettle-signature: [0-9a-f]\{64\}' receiver.log || fail "the TestMessage was not signed"
grep -q 'Subscription for \\"events.names.order_created\\" event is active.*(HTTP 201)' out.txt || fail "the Metro subscription was not created"
grep -q '"event":"test_connection"' receiver.log || fail "Metro's test_connection did not reach the receiver"
grep -q 'x-signature: [0-9a-f]\{64\}' receiver.log || fail "Metro's test_connection was not signed"
grep -q '^{"webhooks":\[{"featureMethod":"update","guid":"[0-9a-f-]*","id":[0-9]*,"featureId":"articles"' out.txt || fail "the Lagerkoll JSON create"
grep -q '^<WebhookResponse><webhooks><webhook><featureMethod>change</featureMethod>' out.txt || fail "an XML create was not answered in XML"
grep -q '^<WebhookResponse><webhooks><webhook><featureMethod>update</featureMethod>' out.txt || fail "the XML list"
grep -q '^{"guid":"[0-9a-f-]*","messageId":"[0-9a-f-]*"}' out.txt || fail "the Lagerkoll execute"
grep -q '"articleId": 42, "stock": 7' receiver.log || fail "the executed body was not delivered as sent"
grep -q 'x-lagerkoll-guid: ' receiver.log || fail "the Lagerkoll delivery lacks its headers"
grep -q '^{"messageId":"prod-42-[0-9]*","subscriptions":1} (HTTP 202)' out.txt || fail "the publish did not reach the one subscription"
grep -q '^Standard Webhooks signature: valid' out.txt || fail "tidings verify: Standard Webhooks"
grep -q '^X-iZettle-Signature: valid' out.txt || fail "tidings verify: X-iZettle-Signature"
grep -q '^\[{"organization":"5b6a3f52-3c4e-11ee-be56-0242ac120002","subscriptionId":"f02f80f8-8f35-11eb-8dcd-0242ac130003","messageId":"prod-42-[0-9]*","eventName":"ProductUpdated","attempt":1,.*"status":200' out.txt || fail "the attempts"
grep -q '  1  200 .* prod-42-[0-9]* *delivered$' out.txt || fail "tidings attempts"
grep -q '"subscriptionUuid":"f02f80f8-8f35-11eb-8dcd-0242ac130003"} (HTTP 202)' out.txt || fail "the replay"
grep -q '^303 http://127.0.0.1:[0-9]*/portal/$' out.txt || fail "the portal link did not open into the portal"

# What the walk-through left behind: the key works, the subscription is gone.
key="$(grep -o 'tdk_[A-Za-z0-9]*' <(tidings keys list) || true)"
left="$(curl -sS "http://127.0.0.1:$api_port/organizations/self/subscriptions" \
  -H "Authorization: Bearer $(tidings keys create --org 5b6a3f52-3c4e-11ee-be56-0242ac120002 --scope READ:PRODUCT | tail -n 1)")"
[ "$left" = "[]" ] || fail "expected no subscriptions after the delete, got $left"
[ -z "$key" ] || fail "keys list printed a secret"

# Ctrl-C stops the server cleanly.
kill -INT "${pids[1]}"
wait "${pids[1]}" || fail "tidings serve did not exit cleanly on SIGINT"
grep -q "stopped" serve.log || fail "tidings serve did not say it stopped"
echo "walkthrough: $(grep -c 'walkthrough:start' "$root/README.md") blocks passed, 0 failed"
