//! Every black-box test, one module a subject, in one test binary: the AWS SDK and the rest of
//! the dependency tree are linked once, not once a file.
//!
//! A test's path names its tier. Plain `cargo test` runs every test whose path has neither
//! `e2e` nor `soak`: unit tests and the black-box suites on `tidings serve`'s embedded stack,
//! with nothing else running. Paths with `e2e` need what `./scripts/test.sh` installs and starts
//! (the AWS-API emulator, the Lambda runtime emulator, the Python and browser tools): they are
//! `#[ignore]`d, and the test command runs them with `--include-ignored`. Paths with `soak` are
//! the long runs of `./scripts/soak.sh`.

mod api_gateway;
mod cli;
mod delivery;
mod delivery_options;
mod delivery_routine;
mod durability;
mod e2e_aws_limits;
mod e2e_lambda_handlers;
mod e2e_publish_sources;
mod e2e_whole_stack;
mod isolation;
mod lagerkoll_api;
mod metro_api;
mod portal;
mod ports_contract;
mod publish_batch;
mod purchases;
mod real_clients;
mod rotation;
mod zettle_api;
