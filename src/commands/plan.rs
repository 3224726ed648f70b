use anyhow::Result;

use super::{load_config, print_json};
use crate::cli::{Cli, OverrideArgs};
use crate::plan::Plan;

pub fn run(cli: &Cli, overrides: &OverrideArgs, json: bool) -> Result<()> {
    let (config, source) = load_config(cli, overrides)?;
    let plan = Plan::resolve(&config, &cli.root())?;
    for warning in &plan.warnings {
        errln!("warning: {warning}");
    }
    if json {
        return print_json(&plan);
    }
    outln!(
        "Plan from {source}, CPU vendor {}",
        plan.cpu_vendor.as_str()
    );
    outln!("Image: {} -> {}", plan.image.base, plan.image.tag);
    outln!("Kernel arguments:");
    for karg in &plan.kargs {
        outln!("  {karg}");
    }
    outln!("Initramfs drivers: {}", plan.initramfs_drivers.join(" "));
    outln!("Files:");
    for file in &plan.files {
        outln!(
            "  {} ({:04o}, {} layer)",
            file.path,
            file.mode,
            serde_json::to_value(file.layer)?.as_str().unwrap_or("?")
        );
    }
    match &plan.kernel {
        Some(kernel) => outln!(
            "Kernel: replaced ({}) from {}",
            kernel.purpose,
            serde_json::to_string(&kernel.source)?
        ),
        None => outln!("Kernel: the base image's"),
    }
    for module in &plan.modules {
        outln!(
            "Module: {} {} (dkms, built against the image kernel)",
            module.name,
            module.version
        );
    }
    Ok(())
}
