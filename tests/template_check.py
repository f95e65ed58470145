"""Checks infra/template.yaml against the code it deploys: what cfn-lint cannot know.

Run with the test virtualenv's Python (cfn-lint provides the CloudFormation YAML loader):
    .venv/bin/python tests/template_check.py
"""
import json
import os
import pathlib
import re
import sys

from cfnlint.decode import cfn_yaml
from samtranslator.translator.transform import transform

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
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            check(all("*" not in a for a in actions), f"{name}: wildcard action in {actions}")
            res = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            check(all(r != "*" for r in res), f"{name}: wildcard resource")

# The table the DynamoDB adapter expects.
table = resources["Table"]["Properties"]
check([k["AttributeName"] for k in table["KeySchema"]] == ["PK", "SK"], "table keys must be PK, SK")
gsis = {g["IndexName"]: [k["AttributeName"] for k in g["KeySchema"]] for g in table["GlobalSecondaryIndexes"]}
dynamodb_rs = "\n".join(f.read_text() for f in sorted((ROOT / "shared" / "src" / "aws" / "dynamodb").glob("*.rs")))
gsi_name = re.search(r'(?:pub(?:\(crate\))? )?const GSI1: &str = "([^"]+)"', dynamodb_rs).group(1)
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
# The paced lane: rate-limited jobs wait their last seconds in batches of their own.
paced_queue = resources["PacedQueue"]["Properties"]
check("deadLetterTargetArn" in paced_queue["RedrivePolicy"], "paced queue needs a redrive policy")
paced = functions["DeliveryFunction"]["Properties"]["Events"].get("Paced", {"Properties": {}})
check(paced["Properties"].get("Queue") == {"Fn::GetAtt": ["PacedQueue", "Arn"]}, "the delivery function must consume the paced queue")
check(paced["Properties"].get("ScalingConfig", {}).get("MaximumConcurrency") == {"Ref": "PacedConcurrency"}, "the paced event source is capped by PacedConcurrency")
check(paced["Properties"].get("FunctionResponseTypes") == ["ReportBatchItemFailures"], "the paced event source reports partial batch failures")
check(template["Globals"]["Function"]["Environment"]["Variables"].get("TIDINGS_PACED_QUEUE_URL") == {"Ref": "PacedQueue"}, "TIDINGS_PACED_QUEUE_URL")
paced_statements = [st for st in resources["DeliveryRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"] if "PacedQueue" in json.dumps(st.get("Resource"))]
paced_actions = {a for st in paced_statements for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])}
check({"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} <= paced_actions, "the delivery role must send to and consume the paced queue")
# The code waits in place up to the SQS queue's lateness, which covers the batching window.
sqs_rs = "\n".join(f.read_text() for f in sorted((ROOT / "shared" / "src" / "aws" / "sqs").glob("*.rs")))
lateness = int(re.search(r"fn lateness\(&self\) -> Duration \{[^}]*Duration::from_secs\((\d+)\)", sqs_rs).group(1))
check(paced["Properties"].get("MaximumBatchingWindowInSeconds", 0) + 1 <= lateness, f"the paced lane's batching window and 1 s of delay rounding must fit the queue's lateness of {lateness} s")
alarms = of_type("AWS::CloudWatch::Alarm")
# Alarms on one metric; metric-math alarms (the dead-letter queue's) are checked on their own.
single = {name: a for name, a in alarms.items() if "MetricName" in a["Properties"]}
check("RetryQueueAgeAlarm" in alarms, "an age-of-oldest-message alarm on the retry queue")
check("PacedQueueAgeAlarm" in alarms, "an age-of-oldest-message alarm on the paced queue")
check("DeadLetterQueueAlarm" in alarms, "an alarm on the dead-letter queue")
for fn in functions:
    check(any(isinstance(a["Properties"]["Dimensions"], list) and a["Properties"]["Dimensions"][0]["Value"] == {"Ref": fn}
              for a in single.values()), f"an error alarm on {fn}")
check("PublishDeadLetterQueueAlarm" in alarms, "an alarm on the publish queue's dead-letter queue")
check("PublishQueueAgeAlarm" in alarms, "an age-of-oldest-message alarm on the publish queue")
# The publish queue feeds the ingest function, whose role may consume it and move refused
# records to its dead-letter queue; its visibility outlasts the function's timeout six times.
publish = functions["IngestFunction"]["Properties"]["Events"].get("PublishQueue", {"Properties": {}})
check(publish["Properties"].get("Queue") == {"Fn::GetAtt": ["PublishQueue", "Arn"]}, "the ingest function must consume the publish queue")
check(publish["Properties"].get("FunctionResponseTypes") == ["ReportBatchItemFailures"], "the publish event source reports partial batch failures")
check(publish["Properties"].get("ScalingConfig", {}).get("MaximumConcurrency") == {"Ref": "PublishConcurrency"}, "the publish event source is capped by PublishConcurrency")
ingest_timeout = functions["IngestFunction"]["Properties"].get("Timeout", template["Globals"]["Function"]["Timeout"])
check(resources["PublishQueue"]["Properties"]["VisibilityTimeout"] >= 6 * ingest_timeout, "PublishQueue's visibility is at least six times the ingest timeout")
check(resources["PublishQueue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["PublishDeadLetterQueue", "Arn"]}, "PublishQueue redrives to PublishDeadLetterQueue")
ingest_statements = json.dumps(resources["IngestRole"]["Properties"]["Policies"])
for action in ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]:
    check(action in ingest_statements, f"the ingest role needs {action} on the publish queues")
check("PublishDeadLetterQueue" in ingest_statements, "the ingest role may send refused records to the publish dead-letter queue")
# Every queue the ingest function reads publish records from has its grant of organizations in
# TIDINGS_PUBLISH_GRANTS (a source without one would publish for every tenant, or for none
# silently), and the EventBridge rule matches its detail-type, its sources and this account.
publish_sources = [e["Properties"]["Queue"] for e in functions["IngestFunction"]["Properties"]["Events"].values()
                   if e["Type"] == "SQS"]
publish_sources += [m["Properties"]["EventSourceArn"] for m in of_type("AWS::Lambda::EventSourceMapping").values()
                    if m["Properties"]["FunctionName"] == {"Ref": "IngestFunction"}]
grants = json.dumps(functions["IngestFunction"]["Properties"].get("Environment", {}).get("Variables", {}).get("TIDINGS_PUBLISH_GRANTS"))
for source in publish_sources:
    named = "${%s.Arn}" % source["Fn::GetAtt"][0] if "Fn::GetAtt" in source else "${%s}" % source["Ref"]
    check(named + "=" in grants, f"TIDINGS_PUBLISH_GRANTS names no grant for the publish source {named}")
rule_pattern = resources["PublishEventRule"]["Properties"]["EventPattern"]
check(set(rule_pattern) == {"detail-type", "source", "account"}, f"the publish rule matches {sorted(rule_pattern)}")
check(rule_pattern["account"] == [{"Ref": "AWS::AccountId"}], "the publish rule matches this account's events only")
rule_targets = [t["Arn"] for t in resources["PublishEventRule"]["Properties"]["Targets"]]
check(rule_targets == [{"Fn::GetAtt": ["PublishEventQueue", "Arn"]}], "the publish rule's events have a queue (and grant) of their own")
producer = resources["PublishProducerPolicy"]["Properties"]["PolicyDocument"]["Statement"]
check(producer == [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["PublishQueue", "Arn"]}}],
      "a producer needs sqs:SendMessage on the publish queue and nothing else")
# The HTTP API (ApiType=HTTP) routes the ingest function's routes as the REST API does.
http_routes = {r["Properties"]["RouteKey"]: r["Properties"]["Target"] for r in of_type("AWS::ApiGatewayV2::Route").values()}
rest_ingest = {f'{e["Properties"]["Method"].upper()} {e["Properties"]["Path"]}'
               for e in functions["IngestFunction"]["Properties"]["Events"].values() if e["Type"] == "Api"}
http_ingest = {key for key, target in http_routes.items() if "HttpIngestIntegration" in json.dumps(target)}
check(rest_ingest == http_ingest, f"the HTTP API's ingest routes {sorted(http_ingest)} differ from the REST API's {sorted(rest_ingest)}")
check("HttpSubscriptionsIntegration" in json.dumps(http_routes.get("$default")), "the HTTP API's other requests go to the subscriptions function")
for name, group in of_type("AWS::Logs::LogGroup").items():
    check("RetentionInDays" in group["Properties"], f"{name}: retention")

# Every operation of the OpenAPI document (which a unit test holds equal to the router's table)
# is routed to a function: by its own method or ANY, on its path or a {proxy+} that covers it.
openapi = json.loads((ROOT / "shared" / "src" / "api" / "openapi.json").read_text())
api_events = [e["Properties"] for fn in functions.values() for e in fn["Properties"]["Events"].values() if e["Type"] == "Api"]


def covers(template_path, path):
    want, got = template_path.strip("/").split("/"), path.strip("/").split("/")
    if want and want[-1] == "{proxy+}":
        return len(got) >= len(want) and all(w == g or w.startswith("{") for w, g in zip(want[:-1], got))
    return len(want) == len(got) and all(w == g or (w.startswith("{") and g.startswith("{")) for w, g in zip(want, got))


for path, item in openapi["paths"].items():
    for method in (m.upper() for m in item if m != "parameters"):
        routed = [e for e in api_events if covers(e["Path"], path) and e["Method"] in (method, "ANY")]
        check(len(routed) == 1, f"{method} {path} is routed to {len(routed)} functions, not one")

# Route -> function -> the AWS actions its code path calls. The routes that queue deliveries
# (api::Routes::Ingest: those the code declares with `Route::queueing`: publish, replay, test
# events, Lagerkoll's execute) need sqs:SendMessage on the delivery queue; the function serving
# the rest must not have it.
def route_shape(path):
    return "/".join("{}" if part.startswith("{") else part for part in path.strip("/").split("/"))


queueing_routes = {
    (m.group(1), route_shape(m.group(2)))
    for source in (ROOT / "shared" / "src").rglob("*.rs")
    for m in re.finditer(r'Route::queueing\(\s*Method::(\w+),\s*"([^"]+)"', source.read_text())
}
check(len(queueing_routes) >= 4, f"the code's queueing routes were not found: {queueing_routes}")


def queues_deliveries(path, method):
    if path.endswith("{proxy+}"):  # Lagerkoll's /v1/webhooks/{guid}: one segment behind the proxy
        path = path.replace("{proxy+}", "{}")
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"] if method == "ANY" else [method]
    return any((m, route_shape(path)) in queueing_routes for m in methods)


def sends_to_delivery_queue(function):
    role = resources[function["Properties"]["Role"]["Fn::GetAtt"][0]]
    return any("sqs:SendMessage" in json.dumps(st["Action"]) and json.dumps(st["Resource"]) == json.dumps({"Fn::GetAtt": ["DeliveryQueue", "Arn"]})
               for policy in role["Properties"]["Policies"] for st in policy["PolicyDocument"]["Statement"])


def served_code(main_rs):
    """A function's main.rs, with the body of the shared handler it calls when that handler
    dispatches more than API events (the ingest function's `handle_ingest`)."""
    m = re.search(r"tidings::lambda::(handle_\w+)", main_rs)
    if m and m.group(1) != "handle_http":
        lambda_rs = (ROOT / "shared" / "src" / "lambda.rs").read_text()
        body = re.search(r"pub async fn " + m.group(1) + r"\b.*?\n}\n", lambda_rs, re.S)
        check(body is not None, f"shared/src/lambda.rs defines no {m.group(1)}")
        return main_rs + (body.group(0) if body else "")
    return main_rs


for name, fn in functions.items():
    main_rs = served_code((ROOT / "infra" / fn["Properties"]["CodeUri"] / "src" / "main.rs").read_text())
    for event in (e for e in fn["Properties"].get("Events", {}).values() if e["Type"] == "Api"):
        path, method = event["Properties"]["Path"], event["Properties"]["Method"]
        if queues_deliveries(path, method):
            check(sends_to_delivery_queue(fn), f"{method} {path} queues deliveries, but {name}'s role cannot send to the delivery queue")
            check("Routes::Ingest" in main_rs, f"{name} serves {method} {path} but does not serve Routes::Ingest")
        else:
            check("Routes::Subscriptions" in main_rs, f"{name} serves {method} {path} but does not serve Routes::Subscriptions")
check(not sends_to_delivery_queue(functions["SubscriptionsFunction"]), "the subscriptions role must not send to the delivery queue")

# --- As an AWS reviewer reads it ---------------------------------------------------------
# SAM's own expansion: one stage (Prod), no implicit "Stage" stage bypassing its settings.
expanded = json.loads(json.dumps(template))
for fn in expanded["Resources"].values():
    if fn["Type"] == "AWS::Serverless::Function":
        fn["Properties"]["CodeUri"] = "s3://bucket/key"  # what `sam package` puts there
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


class _NoManagedPolicies:
    def load(self):
        return {}


cfn = transform(expanded, {"SenderEmail": "alerts@example.com"}, _NoManagedPolicies())["Resources"]
stages = [r["Properties"]["StageName"] for r in cfn.values() if r["Type"] == "AWS::ApiGateway::Stage"]
stages += [r["Properties"]["StageName"] for r in cfn.values() if r["Type"] == "AWS::ApiGateway::Deployment" and "StageName" in r["Properties"]]
check(stages == ["Prod"], f"the API must have the Prod stage only, not {stages}")

# Both SQS event sources are capped, so a backlog cannot take the account's concurrency.
for name, mapping in ((n, r) for n, r in cfn.items() if r["Type"] == "AWS::Lambda::EventSourceMapping"):
    check("MaximumConcurrency" in mapping["Properties"].get("ScalingConfig", {}), f"{name}: ScalingConfig.MaximumConcurrency")

# The alarm topic: CloudWatch cannot publish to a topic under the AWS-managed SNS key.
topic = resources["AlarmTopic"]["Properties"]
kms = topic.get("KmsMasterKeyId")
check(kms != "alias/aws/sns", "the alarm topic must not use alias/aws/sns: CloudWatch alarms cannot publish to it")
if isinstance(kms, dict):
    key_policy = json.dumps(resources[kms["Ref"]]["Properties"]["KeyPolicy"])
    check("cloudwatch.amazonaws.com" in key_policy, "the alarm topic's key must let CloudWatch use it")

# SES: every identity a send involves, from the sender only.
ses = [st for st in resources["DeliveryRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"] if st["Sid"] == "AlertMail"][0]
check(json.dumps(ses["Resource"]).endswith('identity/*"}') and "ses:FromAddress" in json.dumps(ses.get("Condition", {})),
      "ses:SendEmail on identity/* (sender domain, sandbox recipients) limited by ses:FromAddress")

# Nothing a stack update or delete could lose.
for name in ["DeliveryQueue", "RetryQueue", "PacedQueue", "DeadLetterQueue", "Table"]:
    check(resources[name].get("DeletionPolicy") == "Retain" and resources[name].get("UpdateReplacePolicy") == "Retain", f"{name}: Retain")
check(table.get("DeletionProtectionEnabled") is True, "the table needs DeletionProtectionEnabled")

# API functions answer before API Gateway REST's 29 s integration limit.
for name, fn in functions.items():
    has_api = any(e["Type"] == "Api" for e in fn["Properties"].get("Events", {}).values())
    timeout = fn["Properties"].get("Timeout", glob["Timeout"])
    check(not has_api or timeout < 29, f"{name}: timeout {timeout} s is not under API Gateway's 29 s")

# Access logs, and the gateway's own errors in a JSON body.
api = resources["Api"]["Properties"]
check("DestinationArn" in api.get("AccessLogSetting", {}), "the API needs access logs")
for response in ["MISSING_AUTHENTICATION_TOKEN", "THROTTLED", "DEFAULT_5XX", "INTEGRATION_TIMEOUT"]:
    check("application/json" in api.get("GatewayResponses", {}).get(response, {}).get("ResponseTemplates", {}), f"gateway response {response}")

# Metrics: what the code emits is what alarms and the dashboard read, and back.
metrics_rs = (ROOT / "shared" / "src" / "metrics.rs").read_text()
emitted = set(re.findall(r'\("([A-Z][A-Za-z]+)", "(?:Count|Milliseconds)"', metrics_rs))
check({"Delivered", "DeliveryFailed", "DeliveryLatency", "Published", "AlertFailed"} <= emitted, f"EMF metrics emitted: {sorted(emitted)}")
for name, alarm in single.items():
    if alarm["Properties"]["Namespace"] == "Tidings":
        check(alarm["Properties"]["MetricName"] in emitted, f"{name}: the code emits no {alarm['Properties']['MetricName']}")
for fn in functions:
    check(any(a["Properties"]["MetricName"] == "Throttles" and a["Properties"]["Dimensions"][0]["Value"] == {"Ref": fn}
              for a in single.values()), f"a throttles alarm on {fn}")
check(any(a["Properties"]["MetricName"] == "ApproximateAgeOfOldestMessage" and a["Properties"]["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["DeliveryQueue", "QueueName"]}
          for a in single.values()), "a delivery-lag alarm on the delivery queue")
check("Dashboard" in resources, "a CloudWatch dashboard")
dashboard = resources.get("Dashboard", {"Properties": {"DashboardBody": {"Fn::Sub": ['{"widgets": []}', {}]}}})["Properties"]["DashboardBody"]["Fn::Sub"]
body = dashboard[0]
for var in list(dashboard[1]) + ["AWS::Region"]:
    body = body.replace("${" + var + "}", "x")
widgets = json.loads(body)["widgets"]
shown = set()
for widget in widgets:
    namespace = metric = None
    for row in widget["properties"]["metrics"]:  # "." repeats the row above's value, "..." its rest
        if row[0] != "...":
            namespace = namespace if row[0] == "." else row[0]
            metric = metric if row[1] == "." else row[1]
        if namespace == "Tidings":
            shown.add(metric)
check(emitted <= shown | {"FanOut"}, f"dashboard lacks {sorted(emitted - shown)}")
# Every queue of the stack in the queue-depth widget: an operator sees where work waits.
def queue_name_of(value):
    """The queue a dashboard variable names (`!GetAtt Q.QueueName`, or either branch of an `!If`)."""
    if isinstance(value, dict) and "Fn::If" in value:
        return next(filter(None, (queue_name_of(v) for v in value["Fn::If"][1:])), None)
    if isinstance(value, dict) and value.get("Fn::GetAtt", [None, None])[1] == "QueueName":
        return value["Fn::GetAtt"][0]
    return None


queue_names = {var: queue_name_of(value) for var, value in dashboard[1].items() if queue_name_of(value)}
depth = next((w for w in json.loads(dashboard[0].replace("${AWS::Region}", "x"))["widgets"]
              if w["properties"]["title"] == "Queue depth"), {"properties": {"metrics": []}})
depth_queues = {queue_names.get(row[-1][2:-1]) for row in depth["properties"]["metrics"]}
check(set(of_type("AWS::SQS::Queue")) <= depth_queues,
      f"queue-depth widget lacks {sorted(set(of_type('AWS::SQS::Queue')) - depth_queues)}")
check(shown <= emitted, f"dashboard shows metrics the code never emits: {sorted(shown - emitted)}")

# --- Thresholds tied to the settings they depend on --------------------------------------
def duration_seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text.strip()).groups()
    return int(number) * units[unit]


def rust_seconds(expression):
    """A Rust `Duration::from_secs(<arithmetic>)` argument, evaluated."""
    check(re.fullmatch(r"[\d\s*+\-()]+", expression) is not None, f"not plain arithmetic: {expression}")
    return eval(expression)  # digits and operators only (checked above)


schedule_rs = (ROOT / "shared" / "src" / "domain" / "retry_schedule.rs").read_text()
# The delivery routine, all its stages.
delivery_rs = "".join(p.read_text() for p in sorted((ROOT / "shared" / "src" / "delivery").glob("*.rs")))
retention_rs = (ROOT / "shared" / "src" / "domain" / "retention.rs").read_text()
destination_rs = (ROOT / "shared" / "src" / "destination.rs").read_text()
default_schedule = re.search(r'(?:pub(?:\(crate\))? )?const DEFAULT_SCHEDULE: &str = "([^"]+)"', schedule_rs).group(1)
jitter = float(re.search(r"const JITTER: f64 = ([\d.]+);", schedule_rs).group(1))
longest_wait = max(duration_seconds(d) for d in default_schedule.split(",")) * (1 + jitter)
delivery_timeout = rust_seconds(re.search(r"(?:pub(?:\(crate\))? )?const DEFAULT_TIMEOUT: Duration = Duration::from_secs\(([^)]+)\);", destination_rs).group(1))

# Lambda asks for a visibility of at least six times the function's timeout on both lanes; the
# function's timeout covers a batch's deliveries (all at once) with room to record them.
delivery_fn_timeout = functions["DeliveryFunction"]["Properties"]["Timeout"]
for name in ["DeliveryQueue", "RetryQueue", "PacedQueue"]:
    check(resources[name]["Properties"]["VisibilityTimeout"] >= 6 * delivery_fn_timeout, f"{name}: visibility >= 6 x the delivery function's timeout")
check(delivery_fn_timeout >= 3 * delivery_timeout, f"the delivery function's timeout {delivery_fn_timeout} s must cover a batch at the delivery timeout {delivery_timeout} s")

# A retry waiting its longest jittered wait must not page: the retry-age alarm sits above it.
retry_age = resources["RetryQueueAgeAlarm"]["Properties"]["Threshold"]
check(retry_age > longest_wait, f"RetryQueueAgeAlarm at {retry_age} s pages for a normal wait of up to {longest_wait:.0f} s")

# The redrive budget against what a message may be received for by design: once. Every wait
# (a scheduled one past SQS's delay included) is a new message, never a hidden one: SQS caps a
# queue's messages in flight, and a hidden message counts against it for as long as it waits.
designed_receives = 1
check(delivery_rs.count("queue.defer(") == 0 and "put_off(" in delivery_rs, "the delivery routine hides no message: every wait is a new message")
for name in ["DeliveryQueue", "RetryQueue", "PacedQueue"]:
    budget = int(resources[name]["Properties"]["RedrivePolicy"]["maxReceiveCount"])
    check(budget >= 2 * designed_receives + 4, f"{name}: maxReceiveCount {budget} leaves too little room beyond the {designed_receives:.0f} receives a message takes by design")

# Dead letters stay as long as the message they need: the dead-letter queue keeps them for the
# retention the code keeps their messages for.
dlq_days = resources["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] / 86400
code_days = int(re.search(r"(?:pub(?:\(crate\))? )?const DEAD_LETTER_RETENTION: time::Duration = time::Duration::days\((\d+)\);", retention_rs).group(1))
check(dlq_days == code_days, f"dead letters kept {dlq_days} days, their messages {code_days}")

# The dead-letter alarm fires on each new arrival (sent after the last attempt, or redriven),
# not on a queue that is merely not empty, which would stay in ALARM for two weeks.
dlq_alarm = resources["DeadLetterQueueAlarm"]["Properties"]
metrics = {m["Id"]: m for m in dlq_alarm.get("Metrics", [])}
watched = [m for m in metrics.values() if m.get("ReturnData")]
check(len(watched) == 1 and "DIFF(FILL(visible, 0))" in watched[0].get("Expression", ""), "DeadLetterQueueAlarm watches new arrivals, an idle queue's missing minutes as 0")
check(dlq_alarm.get("EvaluationPeriods", 1) >= 2 and dlq_alarm.get("DatapointsToAlarm") == 1,
      "DeadLetterQueueAlarm must look at the minute before an arrival too (DIFF needs two datapoints)")

# Every queue a function's event source reads has an alarm on its messages in flight: past SQS's
# cap (about 120,000) the queue hands out nothing, silently.
in_flight_alarmed = {a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
                     for a in of_type("AWS::CloudWatch::Alarm").values()
                     if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesNotVisible"}
read_queues = {e["Properties"]["Queue"]["Fn::GetAtt"][0] for fn in functions.values()
               for e in fn["Properties"].get("Events", {}).values() if e["Type"] == "SQS"}
check(read_queues and read_queues <= in_flight_alarmed, f"no in-flight alarm on {sorted(read_queues - in_flight_alarmed)}")
check({m["MetricStat"]["Metric"]["MetricName"] for m in metrics.values() if "MetricStat" in m}
      == {"NumberOfMessagesSent", "ApproximateNumberOfMessagesVisible"}, "DeadLetterQueueAlarm reads sends and the visible count")

# A total API outage is answered by functions that succeed: the stage's 5xx rate and latency are
# alarmed, on the API's own name and stage.
# Each alarm reads whichever API ApiType chose: REST by ApiName and Stage, HTTP by ApiId and
# its $default stage (and names the 5xx metric differently).
api_name, stage = api.get("Name"), api["StageName"]


def branches(value):
    """Both branches of an Fn::If on IsHttpApi: (HTTP's, REST's)."""
    if isinstance(value, dict) and "Fn::If" in value and value["Fn::If"][0] == "IsHttpApi":
        return value["Fn::If"][1], value["Fn::If"][2]
    return value, value


for rest_metric, http_metric in [("5XXError", "5xx"), ("Latency", "Latency")]:
    def alarms_api(a):
        p = a["Properties"]
        (http_name, rest_name), (http_dims, rest_dims) = branches(p["MetricName"]), branches(p["Dimensions"])
        return (p["Namespace"] == "AWS/ApiGateway" and rest_name == rest_metric and http_name == http_metric
                and {"Name": "ApiName", "Value": api_name} in rest_dims and {"Name": "Stage", "Value": stage} in rest_dims
                and {"Name": "ApiId", "Value": {"Ref": "HttpApi"}} in http_dims and {"Name": "Stage", "Value": "$default"} in http_dims)
    check(any(alarms_api(a) for a in single.values()), f"an alarm on the API's {rest_metric} (REST: ApiName and Stage; HTTP: ApiId and $default)")

# The access log is JSON whatever the request: a value the gateway has not got is "-", so every
# value is quoted.
access_format = api["AccessLogSetting"]["Format"]
try:
    json.loads(re.sub(r"\$context\.[A-Za-z.]+", "-", access_format))
    check(True, "")
except ValueError as err:
    check(False, f"the access log format is not JSON when a value is missing: {err}")

# The account's API Gateway logging role: region-wide and shared, so kept; the API waits for it
# through a handle that refers to it only when it is made.
for name in ["ApiGatewayLoggingRole", "ApiGatewayAccount"]:
    check(resources[name].get("DeletionPolicy") == "Retain" and resources[name].get("UpdateReplacePolicy") == "Retain", f"{name}: Retain")
ready = resources["Api"].get("DependsOn")
check(ready in resources and resources[ready]["Type"] == "AWS::CloudFormation::WaitConditionHandle"
      and json.dumps(resources[ready].get("Metadata", {})).count('"Ref": "ApiGatewayAccount"') == 1
      and "Fn::If" in json.dumps(resources[ready].get("Metadata", {})),
      "the API must depend on the account's logging role through a conditional wait-condition handle")
check(cfn["Api"].get("DependsOn") == ready, "SAM keeps the API's DependsOn on the RestApi (the stage follows it)")

for failure in failures:
    print(f"FAIL: {failure}")
print(f"template: {checks - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
