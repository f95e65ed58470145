"""Deploys infra/template.yaml into the AWS-API emulator (moto server), the way CloudFormation
would for the parts the functions touch, and prints what the whole-stack test needs as JSON:

- the table, the queues (redrive policies included) and the SES sender identity, created from
  the template's own properties under unique names;
- per function: its binary (from the SAM build metadata), its environment with every `Ref` and
  `Fn::GetAtt` resolved to the emulated resources, its timeout, memory and log format;
- the API's stage and routes (path template, method, function), as API Gateway matches them,
  and with ApiType=HTTP the HTTP API's routes (route key, function) instead;
- the SQS event sources (queue, batch size, concurrency cap, response types), the template's
  own event source mappings included;
- the EventBridge rules (bus, pattern, target queue), for the harness to deliver events to, and
  the functions' schedules, for the harness to invoke them on;
- per function, credentials of its own principal, registered with the emulator together with its
  template role's statements (resolved), so each call the role does not allow is refused.

Resources whose `Condition` is false are skipped, and `Fn::If` is resolved, as CloudFormation does.

Nothing here knows the resource names: rename one in the template and the manifest follows, so a
broken link between the template and the code fails the test.

    python tests/emulated_deploy.py --suffix abc123 --sender alerts@example.com [--param K=V ...] [--max-receive-count N]
        [--in-flight-cap N]
"""
import argparse
import json
import os
import pathlib
import re
import sys
import urllib.request

import boto3
from cfnlint.decode import cfn_yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "123456789012"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--suffix", required=True, help="appended to every resource name")
    parser.add_argument("--sender", required=True, help="the SenderEmail parameter")
    parser.add_argument("--param", action="append", default=[], help="another template parameter, K=V")
    parser.add_argument("--max-receive-count", type=int,
                        help="a redrive maxReceiveCount below the template's, for tests that must see within "
                             "seconds whether receives are spent without attempts")
    parser.add_argument("--principal-prefix", default="",
                        help="put before each function principal's name (the IAM audit skips `Outside…`)")
    parser.add_argument("--in-flight-cap", type=int,
                        help="the most messages each queue of the stack holds in flight (SQS: about 120,000)")
    args = parser.parse_args()

    template = cfn_yaml.load(str(ROOT / "infra" / "template.yaml"))
    params = {name: p.get("Default") for name, p in template.get("Parameters", {}).items()}
    params["SenderEmail"] = args.sender
    params.update(dict(p.split("=", 1) for p in args.param))
    # A CommaDelimitedList parameter's Ref is its list of values.
    for name, p in template.get("Parameters", {}).items():
        if p.get("Type") == "CommaDelimitedList" and isinstance(params.get(name), str):
            params[name] = [v.strip() for v in params[name].split(",")]
    params.update({"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws",
                   "AWS::StackName": f"tidings-{args.suffix}", "AWS::URLSuffix": "amazonaws.com"})
    conditions = {}

    def condition(name):
        if name not in conditions:
            conditions[name] = bool(evaluate(template["Conditions"][name]))
        return conditions[name]

    def evaluate(value):
        (fn, arg), = value.items()
        if fn == "Fn::Equals":
            return str(resolve(arg[0])) == str(resolve(arg[1]))
        if fn == "Fn::Not":
            return not evaluate(arg[0])
        if fn == "Fn::And":
            return all(evaluate(a) for a in arg)
        if fn == "Fn::Or":
            return any(evaluate(a) for a in arg)
        if fn == "Condition":
            return condition(arg)
        raise ValueError(f"unknown condition function {fn}")

    physical = {}  # logical id -> {"Ref": ..., attribute: ...}
    no_value = object()  # AWS::NoValue: the property or list item is left out

    def resolve(value):
        if isinstance(value, dict) and len(value) == 1:
            (fn, arg), = value.items()
            if fn == "Ref" and arg == "AWS::NoValue":
                return no_value
            if fn == "Ref":
                return params[arg] if arg in params else physical[arg]["Ref"]
            if fn == "Fn::Join":
                return arg[0].join(str(v) for v in resolve(arg[1]))
            if fn == "Fn::GetAtt":
                name, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return physical[name][attr]
            if fn == "Fn::If":
                return resolve(arg[1] if condition(arg[0]) else arg[2])
            if fn == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                for key, val in {**params, **{k: v["Ref"] for k, v in physical.items()}}.items():
                    text = text.replace("${" + key + "}", str(val))
                for name, attrs in physical.items():
                    for attr, val in attrs.items():
                        text = text.replace("${" + f"{name}.{attr}" + "}", str(val))
                return text
        if isinstance(value, dict):
            return {k: v for k, v in ((k, resolve(v)) for k, v in value.items()) if v is not no_value}
        if isinstance(value, list):
            return [v for v in (resolve(v) for v in value) if v is not no_value]
        return value

    # Resources whose condition is false are not created, as CloudFormation skips them.
    resources = {name: r for name, r in template["Resources"].items()
                 if "Condition" not in r or condition(r["Condition"])}

    session = boto3.session.Session(region_name=REGION)
    dynamodb, sqs, ses = session.client("dynamodb"), session.client("sqs"), session.client("sesv2")

    # Tables.
    for name, res in resources.items():
        if res["Type"] != "AWS::DynamoDB::Table":
            continue
        props = res["Properties"]
        table = f"tidings-{args.suffix}-{name}"
        dynamodb.create_table(
            TableName=table,
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            GlobalSecondaryIndexes=[{k: v for k, v in g.items()} for g in props.get("GlobalSecondaryIndexes", [])],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        )
        if "TimeToLiveSpecification" in props:
            dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification=props["TimeToLiveSpecification"])
        physical[name] = {"Ref": table, "Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"}

    # Queues: those without a redrive policy first (they are its targets).
    queues = [n for n, r in resources.items() if r["Type"] == "AWS::SQS::Queue"]
    queues.sort(key=lambda n: "RedrivePolicy" in resources[n].get("Properties", {}))
    for name in queues:
        props = resources[name].get("Properties", {})
        attributes = {}
        for key in ["VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds"]:
            if key in props:
                attributes[key] = str(props[key])
        if "RedrivePolicy" in props:
            redrive = resolve(props["RedrivePolicy"])
            if args.max_receive_count is not None:
                redrive = {**redrive, "maxReceiveCount": min(int(redrive["maxReceiveCount"]), args.max_receive_count)}
            attributes["RedrivePolicy"] = json.dumps(redrive)
        queue_name = f"tidings-{args.suffix}-{name}"
        url = sqs.create_queue(QueueName=queue_name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        physical[name] = {"Ref": url, "Arn": arn, "QueueName": queue_name, "QueueUrl": url}

    # The sender identity (created by the stack, or already verified in the account).
    for name, res in resources.items():
        if res["Type"] == "AWS::SES::EmailIdentity":
            identity = resolve(res["Properties"]["EmailIdentity"])
            physical[name] = {"Ref": identity}
    try:
        ses.create_email_identity(EmailIdentity=args.sender)
    except ses.exceptions.AlreadyExistsException:
        pass

    # Resources the functions only name (log groups, roles, topics): names of the right shape.
    for name, res in resources.items():
        if name not in physical and not res["Type"].startswith("AWS::Serverless::"):
            physical[name] = {"Ref": f"{name}-{args.suffix}", "Arn": f"arn:aws:emulated:{REGION}:{ACCOUNT}:{name}"}

    glob = template.get("Globals", {}).get("Function", {})
    apis = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Serverless::Api"}
    api_stage = {name: props.get("StageName") for name, props in apis.items()}
    gateway_responses = {kind: {"status": r.get("StatusCode"), "body": r.get("ResponseTemplates", {}).get("application/json")}
                         for props in apis.values() for kind, r in props.get("GatewayResponses", {}).items()}
    functions, routes, event_sources, schedules = {}, [], [], []
    for name, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        props = res["Properties"]
        env = dict(glob.get("Environment", {}).get("Variables", {}))
        env.update(props.get("Environment", {}).get("Variables", {}))
        functions[name] = {
            "binary": res["Metadata"]["BuildProperties"]["Binary"],
            "env": {k: str(resolve(v)) for k, v in env.items()},
            "timeout": props.get("Timeout", glob.get("Timeout", 3)),
            "memory": props.get("MemorySize", glob.get("MemorySize", 128)),
            "log_format": props.get("LoggingConfig", {}).get("LogFormat", "Text"),
        }
        for event_name, event in props.get("Events", {}).items():
            eprops = event["Properties"]
            if event["Type"] == "Schedule":
                schedules.append({"function": name, "event": event_name, "schedule": eprops["Schedule"]})
            elif event["Type"] == "Api":
                api = eprops["RestApiId"]["Ref"]
                routes.append({"function": name, "event": event_name, "path": eprops["Path"],
                               "method": eprops["Method"].upper(), "stage": api_stage[api]})
            elif event["Type"] == "SQS":
                arn = resolve(eprops["Queue"])
                queue = next(p for p in physical.values() if p.get("Arn") == arn)
                event_sources.append({
                    "function": name, "event": event_name, "queue_url": queue["QueueUrl"], "queue_arn": arn,
                    "batch_size": eprops.get("BatchSize", 10),
                    "batching_window_s": eprops.get("MaximumBatchingWindowInSeconds", 0),
                    "maximum_concurrency": resolve(eprops.get("ScalingConfig", {}).get("MaximumConcurrency")),
                    "report_batch_item_failures": "ReportBatchItemFailures" in eprops.get("FunctionResponseTypes", []),
                })
    # Event source mappings declared as resources (a team's own publish queue).
    for name, res in resources.items():
        if res["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        props = res["Properties"]
        arn = resolve(props["EventSourceArn"])
        queue_name = arn.rsplit(":", 1)[1]
        event_sources.append({
            "function": props["FunctionName"]["Ref"], "event": name,
            "queue_url": sqs.get_queue_url(QueueName=queue_name)["QueueUrl"], "queue_arn": arn,
            "batch_size": props.get("BatchSize", 10),
            "batching_window_s": props.get("MaximumBatchingWindowInSeconds", 0),
            "maximum_concurrency": resolve(props.get("ScalingConfig", {}).get("MaximumConcurrency")),
            "report_batch_item_failures": "ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
        })
    # The HTTP API (ApiType=HTTP): its routes by route key, each to its integration's function.
    http_routes = []
    for name, res in resources.items():
        if res["Type"] != "AWS::ApiGatewayV2::Route":
            continue
        integration = re.search(r"\$\{(\w+)\}", res["Properties"]["Target"]["Fn::Sub"]).group(1)
        function = resources[integration]["Properties"]["IntegrationUri"]["Fn::GetAtt"][0]
        key = res["Properties"]["RouteKey"]
        method, path = ("ANY", None) if key == "$default" else key.split(" ", 1)
        http_routes.append({"function": function, "route_key": key, "method": method, "path": path})
    # EventBridge rules: the harness puts matching events on their SQS targets, as EventBridge would.
    rules = []
    for name, res in resources.items():
        if res["Type"] != "AWS::Events::Rule":
            continue
        props = res["Properties"]
        for target in props["Targets"]:
            arn = resolve(target["Arn"])
            queue = next(p for p in physical.values() if p.get("Arn") == arn)
            rules.append({"rule": name, "bus": resolve(props.get("EventBusName", "default")),
                          "pattern": resolve(props["EventPattern"]), "target_queue_url": queue["QueueUrl"]})
    # Each function runs under its own principal, whose policy is its template role: the
    # emulator (scripts/moto_server.py) refuses any call the role does not allow.
    principals = {}
    for name, function in functions.items():
        role = resources[name]["Properties"]["Role"]["Fn::GetAtt"]
        role = role[0] if isinstance(role, list) else role.split(".", 1)[0]
        statements = [s for policy in resources[role]["Properties"].get("Policies", [])
                      for s in resolve(policy["PolicyDocument"])["Statement"]]
        key = f"AKIDTIDINGS{args.suffix.upper()}{name.upper()}"[:128]
        function["credentials"] = {"access_key_id": key, "secret_access_key": f"secret-{args.suffix}-{name}"}
        principals[key] = {"name": f"{args.principal_prefix}{name}-{args.suffix}", "role": f"{role}-{args.suffix}", "statements": statements}
    for endpoint in {os.environ["AWS_ENDPOINT_URL"], os.environ.get("AWS_ENDPOINT_URL_SQS", os.environ["AWS_ENDPOINT_URL"])}:
        urllib.request.urlopen(urllib.request.Request(
            f"{endpoint}/tidings-emulator/principals", data=json.dumps(principals).encode(), method="POST")).read()
        if args.in_flight_cap is not None:
            for props in physical.values():
                if "QueueUrl" in props:
                    urllib.request.urlopen(urllib.request.Request(
                        f"{endpoint}/tidings-emulator/in-flight-cap", method="POST",
                        data=json.dumps({"queue_url": props["QueueUrl"], "cap": args.in_flight_cap}).encode())).read()

    outputs = {name: resolve(o["Value"]) for name, o in template.get("Outputs", {}).items()
               if "Condition" not in o or condition(o["Condition"])}
    json.dump({"functions": functions, "routes": routes, "event_sources": event_sources, "outputs": outputs,
               "schedules": schedules,
               "event_rules": rules, "api_type": "HTTP" if http_routes else "REST", "http_routes": http_routes,
               "gateway_responses": gateway_responses},
              sys.stdout, indent=1)


if __name__ == "__main__":
    main()
