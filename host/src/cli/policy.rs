//! `clonekeeper policy …`: the policy authoring commands.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a module against the contract and list the interfaces it implements.
    Check {
        /// The component (`.wasm`).
        module: std::path::PathBuf,
    },
}

pub async fn main(command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Check { module } => {
            eprintln!("clonekeeper policy check {}: the policy engine is not built yet", module.display());
            ExitCode::from(1)
        }
    }
}
