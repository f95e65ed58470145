//! The `tidings` binary as users run it: help, argument errors, key management, and
//! `tidings serve` keeping its data across a restart and stopping cleanly on Ctrl-C.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};
use tidings_tests::{tidings_binary, Receiver, ServeProcess};

fn tidings(args: &[&str]) -> Output {
    Command::new(tidings_binary()).args(args).output().expect("run tidings")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const ORG: &str = "5b6a3f52-3c4e-11ee-be56-0242ac120002";

fn create_key(data_dir: &Path, scopes: &[&str]) -> (String, String) {
    let mut args = vec!["keys", "create", "--data-dir", data_dir.to_str().unwrap(), "--org", ORG];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let output = tidings(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let secret = text.lines().last().unwrap().to_owned();
    let id = text.split_whitespace().nth(3).unwrap().to_owned();
    (id, secret)
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "create", "--help"],
        vec!["keys", "list", "--help"],
        vec!["keys", "revoke", "--help"],
    ] {
        let output = tidings(&args);
        assert!(output.status.success(), "{args:?}");
        assert!(stdout(&output).contains("Usage:"), "{args:?}: {}", stdout(&output));
    }
    assert!(stdout(&tidings(&["keys", "create", "--help"])).contains("--scope"));
}

#[test]
fn bad_flags_and_values_exit_non_zero_with_one_line() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["serve", "--bogus"], "--bogus"),
        (vec!["serve", "--listen", "nowhere"], "nowhere"),
        (vec!["keys", "create", "--org", "not-a-uuid"], "not-a-uuid"),
        (vec!["keys", "create"], "--org"),
        (vec!["keys", "create", "--org", ORG, "--scope", "READ:EVERYTHING"], "READ:EVERYTHING"),
        (vec!["keys", "create", "--org", ORG, "--expires-at", "tomorrow"], "tomorrow"),
        (vec!["keys", "revoke", "123"], "123"),
        (vec!["serve", "--log-format", "xml"], "xml"),
        // Timeouts parse as the Lambda settings parse them: zero is refused, as in config.rs.
        (vec!["serve", "--delivery-timeout", "0s"], "more than zero"),
        (vec!["serve", "--header-timeout", "0ms"], "more than zero"),
        (vec!["serve", "--body-timeout", "later"], "such as 10s"),
        (vec!["secrets", "rotate", "--org", ORG, "--subscription", ORG, "--overlap", "soon"], "soon"),
        (vec!["launch"], "launch"),
        (vec![], "subcommand"),
        (vec!["keys"], "subcommand"),
    ];
    for (args, mentions) in cases {
        let output = tidings(&args);
        assert!(!output.status.success(), "{args:?} should fail");
        let err = stderr(&output);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(mentions), "{args:?}: {err}");
    }
}

#[test]
fn keys_create_list_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let (id, secret) = create_key(dir.path(), &["READ:PURCHASE", "read:product"]);
    assert!(secret.starts_with("tdk_"), "{secret}");

    let listed = stdout(&tidings(&["keys", "list", "--data-dir", dir.path().to_str().unwrap()]));
    let row = listed.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{id} not in {listed}"));
    assert!(row.contains(ORG) && row.contains("active") && row.contains("READ:PURCHASE READ:PRODUCT"), "{row}");
    assert!(!listed.contains(&secret), "secrets are never listed");
    let other_org = stdout(&tidings(&[
        "keys",
        "list",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--org",
        "00000000-0000-1000-8000-000000000000",
    ]));
    assert!(!other_org.contains(&id));

    let revoked = tidings(&["keys", "revoke", "--data-dir", dir.path().to_str().unwrap(), &id]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let listed = stdout(&tidings(&["keys", "list", "--data-dir", dir.path().to_str().unwrap()]));
    assert!(listed.lines().find(|l| l.starts_with(&id)).unwrap().contains("revoked"));

    let unknown = tidings(&[
        "keys",
        "revoke",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "00000000-0000-4000-8000-000000000000",
    ]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("no API key"));

    let past = tidings(&[
        "keys",
        "create",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--org",
        ORG,
        "--expires-at",
        "2020-01-01T00:00:00Z",
    ]);
    assert!(!past.status.success());
}

#[tokio::test]
async fn serve_keeps_data_across_a_restart_and_honours_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let (id, key) = create_key(dir.path(), &["READ:PRODUCT"]);
    let receiver = Receiver::answering(200).await;
    let http = reqwest::Client::new();

    let server = ServeProcess::start(dir.path(), &[]);
    let subscriptions = format!("{}/organizations/self/subscriptions", server.base);
    let created = http
        .post(&subscriptions)
        .bearer_auth(&key)
        .json(&json!({
            "uuid": "f02f80f8-8f35-11eb-8dcd-0242ac130003",
            "transportName": "WEBHOOK",
            "eventNames": ["ProductUpdated"],
            "destination": receiver.url(),
            "contactEmail": "integrations@example.com"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let created: Value = created.json().await.unwrap();
    let said = server.interrupt();
    assert!(said.contains("stopped"), "{said}");

    let server = ServeProcess::start(dir.path(), &[]);
    let subscriptions = format!("{}/organizations/self/subscriptions", server.base);
    let listed: Value = http.get(&subscriptions).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed, json!([created]));

    // Keys revoked with the CLI while the server runs stop working at once.
    assert!(tidings(&["keys", "revoke", "--data-dir", dir.path().to_str().unwrap(), &id]).status.success());
    let response = http.get(&subscriptions).bearer_auth(&key).send().await.unwrap();
    assert_eq!(response.status(), 401);
    server.interrupt();
}

#[test]
fn store_groups_are_set_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (a, b) = ("5b6a3f52-3c4e-11ee-be56-0242ac120002", "6c7b4063-3c4e-11ee-be56-0242ac120002");
    let set = tidings(&["groups", "set", "--data-dir", data, "north", "--org", b, "--org", a, "--org", a]);
    assert!(set.status.success(), "{}", stderr(&set));
    assert!(stdout(&set).contains("2 stores"));
    let listed = stdout(&tidings(&["groups", "list", "--data-dir", data]));
    assert_eq!(listed.trim(), format!("north  {a} {b}"));
    assert!(!tidings(&["groups", "set", "--data-dir", data, "empty"]).status.success(), "a group needs members");
    assert!(!tidings(&["groups", "set", "--data-dir", data, "bad", "--org", "nope"]).status.success());
}

/// `--log-format json`: every line on stderr is one JSON object, without colour codes, and the
/// lines of a delivery carry the fields an operator follows a message by, as on Lambda.
#[tokio::test]
async fn serve_logs_json_lines_with_the_delivery_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = create_key(dir.path(), &["READ:PRODUCT"]);
    let receiver = Receiver::failing(1, 500).await;
    let http = reqwest::Client::new();
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = ServeProcess::start_with_log(
        dir.path(),
        &["--log-format", "json", "--retry-schedule", "0s,1s"],
        std::process::Stdio::from(log),
    );
    let created = http
        .post(format!("{}/organizations/self/subscriptions", server.base))
        .bearer_auth(&key)
        .json(&json!({
            "uuid": "f02f80f8-8f35-11eb-8dcd-0242ac130003", "transportName": "WEBHOOK",
            "eventNames": ["ProductUpdated"], "destination": receiver.url(), "contactEmail": "ops@example.com"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let published = http
        .post(format!("{}/organizations/self/events", server.base))
        .bearer_auth(&key)
        .json(&json!({"eventName": "ProductUpdated", "payload": {"uuid": "p-1"}, "messageId": "m-json-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);
    // A failed first attempt, then the retry that succeeds.
    assert_eq!(receiver.wait_for(2, std::time::Duration::from_secs(20)).await.len(), 2);
    // The batch's `delivered` line is written once its attempt is recorded, just after the
    // receiver answered: give it a moment before stopping the server.
    for _ in 0..50 {
        if std::fs::read_to_string(&log_path).unwrap_or_default().contains("\"delivered\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.interrupt();

    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains('\u{1b}'), "colour codes in a file: {text}");
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(lines.iter().any(|l| l["span"]["name"] == "request" && l["span"]["path"] == "/organizations/self/events"));
    let attempts: Vec<&Value> = lines.iter().filter(|l| l["span"]["name"] == "delivery").collect();
    assert!(!attempts.is_empty(), "no delivery lines in {text}");
    for line in &attempts {
        assert_eq!(line["span"]["message_id"], "m-json-1", "{line}");
        assert_eq!(line["span"]["subscription"], "f02f80f8-8f35-11eb-8dcd-0242ac130003", "{line}");
        assert!(line["span"]["org"].is_string() && line["span"]["attempt"].is_u64(), "{line}");
    }
    assert!(attempts.iter().any(|l| l["fields"]["message"] == "delivery attempt" && l["fields"]["status"] == 500));
    // The retry succeeded: successes of a batch share one `delivered` line.
    let delivered = lines.iter().find(|l| l["fields"]["message"] == "delivered").expect("a delivered line");
    assert_eq!(delivered["fields"]["deliveries"], "f02f80f8-8f35-11eb-8dcd-0242ac130003/m-json-1#2", "{delivered}");
}

/// Only `serve` creates a data directory: a mistyped one is an error, and nothing is created.
#[test]
fn management_commands_refuse_a_data_dir_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("tidigns");
    let typo_arg = typo.to_str().unwrap();
    for args in [
        vec!["keys", "list", "--data-dir", typo_arg],
        vec!["keys", "create", "--data-dir", typo_arg, "--org", ORG],
        vec!["groups", "list", "--data-dir", typo_arg],
        vec!["attempts", "--data-dir", typo_arg, "--org", ORG, "--subscription", ORG],
        vec!["replay", "--data-dir", typo_arg, "--dead-letters"],
    ] {
        let output = tidings(&args);
        assert!(!output.status.success(), "{args:?}");
        let said = stderr(&output);
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(said.contains("no data directory at") && said.contains("tidigns"), "{said}");
        assert!(!typo.exists(), "{args:?} created the directory");
    }
}

/// `--table` without credentials or region: one line saying what to set, not an SDK dump.
#[test]
fn a_table_without_aws_credentials_or_region_says_what_to_set() {
    let home = tempfile::tempdir().unwrap();
    let run = |region: Option<&str>| {
        let mut command = Command::new(tidings_binary());
        command.args(["keys", "list", "--table", "tidings"]);
        for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION"] {
            command.env_remove(name);
        }
        command.env_remove("AWS_DEFAULT_REGION");
        command.env("HOME", home.path()).env("AWS_EC2_METADATA_DISABLED", "true");
        command
            .env("AWS_CONFIG_FILE", home.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"));
        if let Some(region) = region {
            command.env("AWS_REGION", region);
        }
        command.output().unwrap()
    };
    for (region, expected) in [(Some("eu-north-1"), "no AWS credentials found"), (None, "no AWS region")] {
        let output = run(region);
        assert!(!output.status.success());
        let said = stderr(&output);
        assert_eq!(said.lines().count(), 1, "{said}");
        assert!(said.contains(expected) && said.len() < 250, "{said}");
    }
}

/// `tidings verify --body -` reads the body from stdin; an added newline fails the check.
#[test]
fn verify_reads_the_body_from_stdin() {
    use std::io::Write;
    let key = "k".repeat(64);
    let body = br#"{"messageId":"m","event":"order_created","payload":{},"emittedAt":"2026-11-24T00:00:00Z"}"#;
    let now = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let signature = tidings::dialect::metro::signature(&key, &now, body);
    let verify = |body: &[u8]| {
        let mut child = Command::new(tidings_binary())
            .args(["verify", "--secret", &key, "--body", "-"])
            .args(["--header", &format!("x-timestamp: {now}"), "--header", &format!("x-signature: {signature}")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(body).unwrap();
        child.wait_with_output().unwrap()
    };
    let output = verify(body);
    assert!(output.status.success(), "{}", stdout(&output));
    assert_eq!(stdout(&output).trim(), "Metro x-signature: valid");
    let with_newline = [&body[..], b"\n"].concat();
    assert!(!verify(&with_newline).status.success());
}

mod e2e {
    use super::*;

    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn keys_are_managed_in_a_deployed_stacks_table() {
        let aws = tidings_tests::aws::AwsFixture::new(5).await;
        let table = aws.settings.table.clone();
        let output = tidings(&["keys", "create", "--table", &table, "--org", ORG, "--scope", "READ:PRODUCT"]);
        assert!(output.status.success(), "{}", stderr(&output));
        let secret = stdout(&output).lines().last().unwrap().to_owned();
        let id = stdout(&output).split_whitespace().nth(3).unwrap().to_owned();

        // The deployed API accepts it: the router on the AWS adapters authenticates against DynamoDB.
        let app = aws.app();
        let stored =
            app.store.find_api_key_by_hash(&tidings::domain::api_key::hash_secret(&secret)).await.unwrap().unwrap();
        assert_eq!(stored.organization.to_string(), ORG);

        let listed = stdout(&tidings(&["keys", "list", "--table", &table]));
        assert!(listed.lines().any(|l| l.starts_with(&id) && l.contains("active")), "{listed}");
        assert!(tidings(&["keys", "revoke", "--table", &table, &id]).status.success());
        let listed = stdout(&tidings(&["keys", "list", "--table", &table, "--org", ORG]));
        assert!(listed.lines().any(|l| l.starts_with(&id) && l.contains("revoked")), "{listed}");

        let both = tidings(&["keys", "list", "--table", &table, "--data-dir", "/tmp/x"]);
        assert!(!both.status.success(), "--table and --data-dir exclude each other");
    }

    /// `tidings secrets rotate --table`: the deployed table's subscription gets a new key, the old
    /// one kept for the overlap.
    #[tokio::test]
    #[ignore = "e2e: needs the AWS-API emulator that ./scripts/test.sh starts"]
    async fn secrets_are_rotated_in_a_deployed_stacks_table() {
        let aws = tidings_tests::aws::AwsFixture::new(5).await;
        let app = aws.app();
        let org: tidings::domain::OrganizationId = ORG.parse().unwrap();
        let subscription = tidings_tests::subscription(org, &["ProductCreated"], "https://hooks.example.com/in");
        app.store.create_subscription(&subscription).await.unwrap();
        let id = subscription.id.to_string();
        let output = tidings(&[
            "secrets",
            "rotate",
            "--table",
            &aws.settings.table,
            "--org",
            ORG,
            "--subscription",
            &id,
            "--overlap",
            "2h",
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let new_key = stdout(&output).lines().last().unwrap().to_owned();
        let stored = app.store.get_subscription(org, subscription.id).await.unwrap().unwrap();
        assert_eq!(stored.signing_key, new_key);
        assert_eq!(stored.previous_signing_keys.len(), 1);
        assert_eq!(stored.previous_signing_keys[0].key, subscription.signing_key);
    }
}
