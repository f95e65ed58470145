//! Every black-box test, one module a subject, in one test binary: the AWS SDK and the rest of
//! the dependency tree are linked once, not once a file.

mod aws_limits;
mod cli;
mod delivery_e2e;
mod delivery_options;
mod delivery_routine;
mod durability;
mod isolation;
mod lagerkoll_api;
mod lambda_handlers;
mod metro_api;
mod portal;
mod ports_contract;
mod publish_batch;
mod publish_sources;
mod purchases;
mod real_clients;
mod rotation;
mod whole_stack;
mod zettle_api;
