//! Lambda isolation benchmark: prints figures, asserts nothing.
//!
//! The deployed stack under emulation (`support/stack.rs`: the template in the AWS-API emulator,
//! the real function binaries behind the Lambda Runtime API emulator, two batches at once on
//! each SQS lane): tenant A publishing to a healthy receiver, alone and beside tenant B whose
//! endpoint never answers within the delivery timeout (`support/noisy.rs`). Prints A's
//! publish→receipt p50/p99, the delivery function's billed GB-s per 1,000 of A's deliveries, and
//! how many jobs reached the dead-letter queue by SQS's redrive.
//!
//! Run: `./scripts/bench.sh` (needs the emulator and the test virtualenv it starts).

use std::time::Duration;

use tidings_tests::noisy;

const PUBLISHING: Duration = Duration::from_secs(15);
const PER_SECOND: u32 = 8;

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    println!(
        "\nLambda path, {} publishes/s for {} s per tenant; delivery timeout {} s; schedule {}",
        PER_SECOND,
        PUBLISHING.as_secs(),
        noisy::DELIVERY_TIMEOUT.as_secs(),
        noisy::SCHEDULE
    );
    println!(
        "{:<12} {:>12} {:>10} {:>10} {:>22} {:>20} {:>10} {:>10} {:>10}",
        "B's endpoint",
        "A delivered",
        "A p50 ms",
        "A p99 ms",
        "GB-s / 1,000 of A's",
        "(first / slow lane)",
        "redriven",
        "B tried",
        "B cut"
    );
    for neighbour in [noisy::Neighbour::Absent, noisy::Neighbour::Healthy, noisy::Neighbour::TimingOut] {
        let report = noisy::run(neighbour, PUBLISHING, PER_SECOND).await;
        println!(
            "{:<12} {:>12} {:>10.0} {:>10.0} {:>22.3} {:>20} {:>10} {:>10} {:>10}",
            match neighbour {
                noisy::Neighbour::Absent => "absent",
                noisy::Neighbour::Healthy => "healthy",
                noisy::Neighbour::TimingOut => "timing out",
            },
            format!("{}/{}", report.a_delivered, report.a_published),
            report.percentile(0.5),
            report.percentile(0.99),
            report.gb_seconds_per_thousand(),
            format!("{:.3} / {:.3}", report.gb_seconds_first_lane, report.gb_seconds_slow_lane),
            report.redriven,
            report.b_requests,
            report.b_cut_short
        );
    }
}
