//! Rate-limit and ordered-delivery benchmark: prints figures, asserts nothing.
//!
//! Both hosts, through HTTP (`support/shaping.rs`): `tidings serve` (the release binary given
//! by `TIDINGS_BIN`) and the deployed stack under emulation (the function binaries built beside
//! the benchmark, three instances a lane). Prints the delivered rate against the limit, the most
//! requests in any 10 s against the promise, an unlimited neighbour's p99 alone and beside the
//! backlog; a limit changed under a backlog (lowered, raised, removed), each limit's pace from 2 s
//! after the change; and the ordered throughput per key and overall, with 5 % and 10 % receiver
//! failures, and how many keys another key's failure held up.
//!
//! Run: `./scripts/bench.sh` (needs the emulator and the test virtualenv it starts).

use std::time::Duration;

use tidings_tests::shaping::{self, Api, LimitChange, LimitChangeReport, Ordered, OrderedReport, RateReport};
use tidings_tests::stack::{DeployedStack, Options};
use tidings_tests::{cli_key, Receiver, ServeProcess};

fn print_rate(host: &str, report: &RateReport) {
    println!(
        "{host:<16} {:>9} {:>9} {:>13.0} {:>13.2} {:>16} {:>16.1} {:>16.1}",
        format!("{}/s", report.per_second),
        report.messages,
        report.published_per_second,
        report.delivered_per_second,
        format!("{} / {}", report.most_in_ten_seconds, report.allowed_in_ten_seconds()),
        report.neighbour_p99_alone_ms,
        report.neighbour_p99_beside_ms,
    );
}

fn print_limit_changes(host: &str, report: &LimitChangeReport) {
    for (n, phase) in report.phases.iter().enumerate() {
        let limit = phase.limit.map_or("none".to_owned(), |(rate, burst)| format!("{rate}/s ({burst})"));
        let allowed = phase.allowed_in_ten_seconds().map_or("–".to_owned(), |a| a.to_string());
        println!(
            "{:<16} {:>12} {:>13.1} {:>16} {:>22}",
            if n == 0 { host } else { "" },
            limit,
            phase.per_second(),
            format!("{} / {allowed}", phase.most_in_ten_seconds),
            format!("{} in {:.1} s", phase.since_the_change, phase.seconds_to_the_last),
        );
    }
    println!("{:<16} {} of {} delivered, {} repeats", "", report.delivered, report.messages, report.duplicates);
}

fn change(after_seconds: u64, limit: Option<(u32, u32)>) -> LimitChange {
    LimitChange { after: Duration::from_secs(after_seconds), limit }
}

fn print_ordered(host: &str, report: &OrderedReport) {
    println!(
        "{host:<16} {:>6} {:>9} {:>10} {:>9} {:>13} {:>12.1} {:>12.2} {:>8}",
        report.keys,
        report.messages,
        report.delivered,
        report.requests,
        report.out_of_order,
        report.per_second(),
        report.per_key_per_second(),
        report.held_after_a_success,
    );
}

const ORG: &str = "5b6a3f52-3c4e-11ee-be56-0242ac120002";
const NEIGHBOUR: &str = "6c7b4063-3c4e-11ee-be56-0242ac120002";

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    assert!(std::env::var_os("TIDINGS_BIN").is_some(), "TIDINGS_BIN: the tidings release binary");

    println!("\nRate limits: messages published at once to a limited subscription; an unlimited neighbour at 10/s");
    println!(
        "{:<16} {:>9} {:>9} {:>13} {:>13} {:>16} {:>16} {:>16}",
        "host", "limit", "messages", "published/s", "delivered/s", "most in 10 s", "neighbour p99", "beside (ms)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (_, limited) = cli_key(dir.path(), ORG, &["READ:PRODUCT"]);
    let (_, neighbour) = cli_key(dir.path(), NEIGHBOUR, &["READ:PRODUCT"]);
    let serve = ServeProcess::start(dir.path(), &[]);
    let local = shaping::rate_limited(&Api::new(&serve.base), &limited, &neighbour, 3_000, (100, 10), 200).await;
    print_rate("tidings serve", &local);
    serve.kill();

    let options = Options { event_source_concurrency: 3, ingest_instances: 3, ..Options::default() };
    let stack = DeployedStack::start(options.clone()).await;
    let limited = stack.key(ORG, &["READ:PRODUCT"]);
    let neighbour = stack.key(NEIGHBOUR, &["READ:PRODUCT"]);
    let deployed = shaping::rate_limited(&Api::new(stack.url("")), &limited, &neighbour, 600, (10, 2), 100).await;
    print_rate("deployed (emul.)", &deployed);
    drop(stack);

    println!("\nA limit changed under a backlog: each limit's pace from 2 s after it was set, and from the change to its last request");
    println!("{:<16} {:>12} {:>13} {:>16} {:>22}", "host", "limit", "delivered/s", "most in 10 s", "since the change");
    let dir = tempfile::tempdir().unwrap();
    // An organization a run: the runs' message ids are the same.
    let (_, lowering) = cli_key(dir.path(), ORG, &["READ:PRODUCT"]);
    let (_, raising) = cli_key(dir.path(), NEIGHBOUR, &["READ:PRODUCT"]);
    let serve = ServeProcess::start(dir.path(), &[]);
    let api = Api::new(&serve.base);
    let lowered = [change(3, Some((20, 2))), change(17, None)];
    print_limit_changes("tidings serve", &shaping::limit_changes(&api, &lowering, 1_500, (100, 10), &lowered).await);
    let raised = [change(3, Some((200, 20)))];
    print_limit_changes("tidings serve", &shaping::limit_changes(&api, &raising, 2_000, (50, 5), &raised).await);
    serve.kill();
    let stack = DeployedStack::start(options.clone()).await;
    let limited = stack.key(ORG, &["READ:PRODUCT"]);
    let changes = [change(6, Some((2, 1))), change(20, Some((20, 2))), change(30, None)];
    let report = shaping::limit_changes(&Api::new(stack.url("")), &limited, 250, (5, 1), &changes).await;
    print_limit_changes("deployed (emul.)", &report);
    drop(stack);

    println!("\nOrdered delivery: one producer a key, 5 % receiver failures (10 % where said); held: keys held up by another's failure");
    println!(
        "{:<16} {:>6} {:>9} {:>10} {:>9} {:>13} {:>12} {:>12} {:>8}",
        "host", "keys", "messages", "delivered", "requests", "out of order", "overall/s", "per key/s", "held"
    );
    let behaviour = shaping::failing_one_in_twenty();
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT"]);
    let serve = ServeProcess::start(dir.path(), &["--retry-schedule", "0s,100ms,200ms,400ms,800ms,1s,1s,1s"]);
    let run = Ordered { keys: 100, per_key: 50 };
    let receiver = Receiver::behaving(behaviour.clone()).await;
    run.publish(&Api::new(&serve.base), &key, &receiver.url()).await.await.unwrap();
    print_ordered("tidings serve", &run.check(&receiver, &behaviour, Duration::from_secs(120)).await);
    serve.kill();
    // 10 % failures over 40 keys of 30: a key's failure holds only that key.
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT"]);
    let serve = ServeProcess::start(dir.path(), &["--retry-schedule", "0s,100ms,200ms,400ms,800ms,1s,1s,1s"]);
    let (tenth, forty) = (shaping::failing_one_in(10), Ordered { keys: 40, per_key: 30 });
    let receiver = Receiver::behaving(tenth.clone()).await;
    forty.publish(&Api::new(&serve.base), &key, &receiver.url()).await.await.unwrap();
    print_ordered("  10 % failures", &forty.check(&receiver, &tenth, Duration::from_secs(120)).await);
    serve.kill();
    // The same without failures: no retries, no probing of a failing endpoint.
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = cli_key(dir.path(), ORG, &["READ:PRODUCT"]);
    let serve = ServeProcess::start(dir.path(), &[]);
    let healthy: tidings_tests::Behaviour = std::sync::Arc::new(|_| (200, Duration::ZERO));
    let receiver = Receiver::behaving(healthy.clone()).await;
    run.publish(&Api::new(&serve.base), &key, &receiver.url()).await.await.unwrap();
    print_ordered("  no failures", &run.check(&receiver, &healthy, Duration::from_secs(120)).await);
    serve.kill();

    let stack = DeployedStack::start(Options { retry_schedule: "0s,1s,1s,1s,1s".into(), ..options }).await;
    let key = stack.key(ORG, &["READ:PRODUCT"]);
    let run = Ordered { keys: 20, per_key: 25 };
    let receiver = Receiver::behaving(behaviour.clone()).await;
    run.publish(&Api::new(stack.url("")), &key, &receiver.url()).await.await.unwrap();
    print_ordered("deployed (emul.)", &run.check(&receiver, &behaviour, Duration::from_secs(180)).await);
}
