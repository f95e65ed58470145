//! `tidings verify`: check a received webhook's signatures.

use std::path::PathBuf;

use clap::Args;
use time::OffsetDateTime;

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The subscription's signingKey, or its whsec_ form.
    #[arg(long, env = "TIDINGS_WEBHOOK_SECRET")]
    secret: String,
    /// File holding the exact body received, byte for byte (an editor's added newline breaks
    /// every signature); `-` reads it from stdin.
    #[arg(long)]
    body: PathBuf,
    /// A received header, "Name: value"; repeat for each.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// File of received headers, one "Name: value" a line (as `curl -D` writes them).
    #[arg(long = "headers")]
    headers_file: Option<PathBuf>,
    /// How far webhook-timestamp may be from now, in seconds.
    #[arg(long, default_value_t = 300)]
    tolerance: i64,
}

pub(crate) fn verify(args: VerifyArgs) -> Result<(), String> {
    let body = if args.body.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut body).map_err(|e| format!("cannot read stdin: {e}"))?;
        body
    } else {
        std::fs::read(&args.body).map_err(|e| format!("cannot read {}: {e}", args.body.display()))?
    };
    let mut lines = args.headers.clone();
    if let Some(file) = &args.headers_file {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        lines.extend(text.lines().map(str::to_owned));
    }
    let headers: Vec<(String, String)> = lines
        .iter()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| !name.contains(' '))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let verification = tidings::signing::verify_webhook(&args.secret, &headers, &body, now, args.tolerance)?;
    for finding in &verification.findings {
        println!("{finding}");
    }
    if verification.valid {
        Ok(())
    } else {
        Err("the webhook did not verify".into())
    }
}
