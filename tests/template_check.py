"""Checks infra/template.yaml against the code it deploys: what cfn-lint cannot know.

Run with the test virtualenv's Python (cfn-lint provides the CloudFormation YAML loader):
    .venv/bin/python tests/template_check.py
"""
import pathlib
import re
import sys

from cfnlint.decode import cfn_yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
template = cfn_yaml.load(str(ROOT / "infra" / "template.yaml"))
resources = template["Resources"]
failures = []
checks = 0


def check(condition, message):
    global checks
    checks += 1
    if not condition:
        failures.append(message)


def of_type(kind):
    return {name: r for name, r in resources.items() if r["Type"] == kind}


# The environment the binaries read is the environment the template sets.
config_rs = (ROOT / "shared" / "src" / "config.rs").read_text()
required_vars = set(re.findall(r'required\("(TIDINGS_[A-Z_]+)"\)', config_rs)) - {"TIDINGS_DATA_DIR", "TIDINGS_BACKEND"}
env = set(template["Globals"]["Function"]["Environment"]["Variables"])
check(required_vars and required_vars <= env, f"template sets {sorted(env)}, the code requires {sorted(required_vars)}")

# Three functions, each built from its crate's binary, each with its own role.
functions = of_type("AWS::Serverless::Function")
check(set(functions) == {"SubscriptionsFunction", "IngestFunction", "DeliveryFunction"}, f"functions: {sorted(functions)}")
glob = template["Globals"]["Function"]
check(glob["Runtime"] == "provided.al2023" and glob["Architectures"] == ["arm64"], "runtime must be provided.al2023 on arm64")
for name, fn in functions.items():
    props, meta = fn["Properties"], fn.get("Metadata", {})
    check(meta.get("BuildMethod") == "rust-cargolambda", f"{name}: BuildMethod rust-cargolambda")
    crate = ROOT / "infra" / props["CodeUri"]
    cargo = (crate / "Cargo.toml").read_text() if (crate / "Cargo.toml").exists() else ""
    binary = meta.get("BuildProperties", {}).get("Binary", "")
    check(f'name = "{binary}"' in cargo, f"{name}: binary {binary!r} is not a bin of {props['CodeUri']}")
    check("Policies" not in props and "Role" in props, f"{name}: must use its own least-privilege role")
    check("LoggingConfig" in props, f"{name}: must log to its own log group")

# No role grants an action or a resource wildcard.
for name, role in of_type("AWS::IAM::Role").items():
    for policy in role["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            check(all("*" not in a for a in actions), f"{name}: wildcard action in {actions}")
            res = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            check(all(r != "*" for r in res), f"{name}: wildcard resource")

# The table the DynamoDB adapter expects.
table = resources["Table"]["Properties"]
check([k["AttributeName"] for k in table["KeySchema"]] == ["PK", "SK"], "table keys must be PK, SK")
gsis = {g["IndexName"]: [k["AttributeName"] for k in g["KeySchema"]] for g in table["GlobalSecondaryIndexes"]}
dynamodb_rs = (ROOT / "shared" / "src" / "aws" / "dynamodb.rs").read_text()
gsi_name = re.search(r'pub const GSI1: &str = "([^"]+)"', dynamodb_rs).group(1)
check(gsis.get(gsi_name) == ["GSI1PK", "GSI1SK"], f"GSI {gsi_name} must be keyed GSI1PK, GSI1SK: {gsis}")
check(table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}, "TTL on expires_at")

# The queue, its dead-letter queue, the trigger and the alarms.
queue = resources["DeliveryQueue"]["Properties"]
check("deadLetterTargetArn" in queue["RedrivePolicy"], "delivery queue needs a redrive policy")
check(queue["VisibilityTimeout"] >= 6 * functions["DeliveryFunction"]["Properties"]["Timeout"], "visibility >= 6 x timeout")
trigger = functions["DeliveryFunction"]["Properties"]["Events"]["Deliveries"]
check(trigger["Type"] == "SQS" and trigger["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"], "partial batch failures")
# The slow lane: retries on their own queue, with their own event source and a concurrency cap.
retry_queue = resources["RetryQueue"]["Properties"]
check("deadLetterTargetArn" in retry_queue["RedrivePolicy"], "retry queue needs a redrive policy")
retries = functions["DeliveryFunction"]["Properties"]["Events"].get("Retries", {"Properties": {}})
check(retries["Properties"].get("Queue") == {"Fn::GetAtt": ["RetryQueue", "Arn"]}, "the delivery function must consume the retry queue")
check("MaximumConcurrency" in retries["Properties"].get("ScalingConfig", {}), "the retry event source needs ScalingConfig.MaximumConcurrency")
check(template["Globals"]["Function"]["Environment"]["Variables"].get("TIDINGS_RETRY_QUEUE_URL") == {"Ref": "RetryQueue"}, "TIDINGS_RETRY_QUEUE_URL")
delivery_role = str(resources["DeliveryRole"]["Properties"]["Policies"])
check("RetryQueue" in delivery_role, "the delivery role must send to and consume the retry queue")
alarms = of_type("AWS::CloudWatch::Alarm")
check("RetryQueueAgeAlarm" in alarms, "an age-of-oldest-message alarm on the retry queue")
check("DeadLetterQueueAlarm" in alarms, "an alarm on the dead-letter queue")
for fn in functions:
    check(any(a["Properties"]["Dimensions"][0]["Value"] == {"Ref": fn} for a in alarms.values()), f"an error alarm on {fn}")
for name, group in of_type("AWS::Logs::LogGroup").items():
    check("RetentionInDays" in group["Properties"], f"{name}: retention")

# Every route the router serves is routed to a function.
paths = {e["Properties"]["Path"] for fn in functions.values() for e in fn["Properties"]["Events"].values() if e["Type"] == "Api"}
for path in ["/organizations/{organizationUuid}/subscriptions", "/organizations/{organizationUuid}/subscriptions/{proxy+}"]:
    check(path in paths, f"route {path} missing")

for failure in failures:
    print(f"FAIL: {failure}")
print(f"template: {checks - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
