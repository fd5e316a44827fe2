//! `riskplatform-operator`: runs the controller, writes the CRD, or replays traces through the autoscaler.

use clap::Parser;
use riskplatform_operator::config::{Cli, Command};

// glibc's malloc kept the heap the first convergence of a large cluster grew to (490 MiB after
// syncing 1,000 platforms whose live heap was about 300 MiB); jemalloc returns freed pages.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            riskplatform_operator::telemetry::init(&cli.operator.log_format);
            riskplatform_operator::run(cli.operator, riskplatform_operator::shutdown_signal()).await?;
        }
        Command::Simulate(args) => {
            riskplatform_autoscale::sim::run_simulate(&args, &mut std::io::stdout().lock())?;
        }
        Command::Crdgen { out_dir } => {
            let path = out_dir.join(riskplatform_crd::CRD_FILE_NAME);
            std::fs::write(&path, riskplatform_crd::crd_yaml())?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
