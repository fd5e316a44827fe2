//! `simulate`: the replay simulator on its own, without the operator's dependencies, so trying
//! settings builds only this crate (`cargo run --release -p riskplatform-autoscale --bin simulate`).

use clap::Parser;

/// Replay a per-minute request trace through the autoscaling policies and the HPA baselines.
#[derive(Parser, Debug)]
#[command(name = "simulate")]
struct Cli {
    #[command(flatten)]
    args: riskplatform_autoscale::sim::SimulateArgs,
}

fn main() -> Result<(), riskplatform_autoscale::sim::SimError> {
    let cli = Cli::parse();
    riskplatform_autoscale::sim::run_simulate(&cli.args, &mut std::io::stdout().lock())
}
