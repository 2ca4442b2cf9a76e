//! `okta-floor`: the least a client can do against an Okta org: fetch every page of
//! `/api/v1/users` (gzip, following `Link: rel="next"`) and throw it away. The benchmark
//! compares okta-pendo-sync with it, to read each figure as a ratio to what the machine allows.
//!
//!   okta-floor --org http://127.0.0.1:PORT [--token T] [--limit 200]
//!
//! Prints one JSON line: pages, bytes (decoded) and seconds.

use std::time::Instant;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "okta-floor")]
struct Args {
    /// The org's base URL.
    #[arg(long)]
    org: String,
    /// The SSWS token.
    #[arg(long, default_value = "okta-test-token")]
    token: String,
    /// Users per page.
    #[arg(long, default_value_t = 200)]
    limit: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = reqwest::Client::builder().build()?;
    let mut next = Some(format!("{}/api/v1/users?limit={}", args.org, args.limit));
    let (mut pages, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    while let Some(url) = next.take() {
        let response = client
            .get(&url)
            .header("authorization", format!("SSWS {}", args.token))
            .header("accept", "application/json")
            .send()
            .await?
            .error_for_status()?;
        next = response
            .headers()
            .get_all("link")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find(|l| l.contains("rel=\"next\""))
            .and_then(|l| Some(l.split_once('<')?.1.split_once('>')?.0.to_owned()));
        bytes += response.bytes().await?.len() as u64;
        pages += 1;
    }
    println!(
        "{{\"pages\":{pages},\"bytes\":{bytes},\"seconds\":{:.3}}}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
