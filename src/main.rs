use clap::Parser;

use passthru_image::cli::Cli;
use passthru_image::{commands, error};

fn main() {
    let cli = Cli::parse();
    if let Err(err) = commands::run(&cli) {
        eprintln!("error: {err:#}");
        std::process::exit(error::exit_code(&err));
    }
}
