//! `cargo bench --bench load -- [options]`: the whole-server load tool of
//! issue 6. Starts the release `vestibule` (or targets `--url`, or another
//! WHIP/WHEP server with `--mode standard --whip-url .. --whep-url ..`),
//! drives it with str0m publishers and subscribers on loopback and prints
//! delivered packets, loss, latency, server CPU per packet and memory per
//! subscriber; `--find-max` raises subscribers to the knee. See
//! benches/README.md for the options and what each figure means.

#[path = "load/mod.rs"]
mod tool;

use clap::Parser as _;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = tool::args::Args::parse();
    let report = tool::run(&args).await?;
    report.print();
    let out = args.json.clone().unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/load.json")
    });
    report.write_json(&out)?;
    println!("JSON: {}", out.display());
    Ok(())
}
