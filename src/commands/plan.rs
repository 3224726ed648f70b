use anyhow::Result;
use camino::Utf8Path;

use super::{load_config, print_json, refuse_with_hosts};
use crate::cli::{Cli, OverrideArgs};
use crate::fleet::{Fleet, Stack};
use crate::image::labels;
use crate::plan::{Layer, Plan};

pub fn run(cli: &Cli, overrides: &OverrideArgs, json: bool) -> Result<()> {
    let (config, source) = load_config(cli, overrides)?;
    let plan = Plan::resolve(&config, &cli.root())?;
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    if json {
        return print_json(&plan);
    }
    println!(
        "Plan from {source}, CPU vendor {}",
        plan.cpu_vendor.as_str()
    );
    println!("Image: {} -> {}", plan.image.base, plan.image.tag);
    println!("Kernel arguments:");
    for karg in &plan.kargs {
        println!("  {karg}");
    }
    println!("Initramfs drivers: {}", plan.initramfs_drivers.join(" "));
    println!("Files:");
    for file in &plan.files {
        println!(
            "  {} ({:04o}, {} layer)",
            file.path,
            file.mode,
            serde_json::to_value(file.layer)?.as_str().unwrap_or("?")
        );
    }
    match &plan.kernel {
        Some(kernel) => println!(
            "Kernel: replaced ({}) from {}",
            kernel.purpose,
            serde_json::to_string(&kernel.source)?
        ),
        None => println!("Kernel: the base image's"),
    }
    for module in &plan.modules {
        println!(
            "Module: {} {} (dkms, built against the image kernel)",
            module.name, module.version
        );
    }
    Ok(())
}

/// `plan --hosts DIR`: every host's plan, grouped by the stack (base, kernel, modules, initramfs) it shares.
pub fn run_fleet(cli: &Cli, overrides: &OverrideArgs, dir: &Utf8Path, json: bool) -> Result<()> {
    refuse_with_hosts(cli, overrides)?;
    let fleet = Fleet::load(dir, &overrides.into(), &cli.root())?;
    for host in &fleet.hosts {
        for warning in &host.plan.warnings {
            eprintln!("warning: {}: {warning}", host.file);
        }
    }
    let stacks = fleet.stacks();
    if json {
        return print_json(&fleet_json(&fleet, &stacks));
    }
    println!(
        "Fleet {dir}: {} hosts on {} stacks",
        fleet.hosts.len(),
        stacks.len()
    );
    for stack in &stacks {
        let first = &stack.hosts[0].plan;
        let kernel = match &first.kernel {
            Some(kernel) => format!("replaced ({})", kernel.purpose),
            None => "the base's".to_owned(),
        };
        let modules: Vec<&str> = first.modules.iter().map(|m| m.name.as_str()).collect();
        let initramfs: Vec<&str> = first
            .files_in(Layer::Initramfs)
            .map(|f| f.path.as_str())
            .collect();
        println!(
            "Stack {}: base {}; kernel {kernel}; modules: {}; initramfs files: {}",
            stack.key.short(),
            first.image.base,
            if modules.is_empty() {
                "none".to_owned()
            } else {
                modules.join(" ")
            },
            initramfs.join(" ")
        );
        for host in &stack.hosts {
            let kargs: Vec<String> = host.plan.kargs.iter().map(|k| k.to_string()).collect();
            println!("  {} -> {}", host.name, host.plan.image.tag);
            println!("    {}", kargs.join(" "));
        }
    }
    Ok(())
}

fn fleet_json(fleet: &Fleet, stacks: &[Stack]) -> serde_json::Value {
    let hosts: Vec<serde_json::Value> = fleet
        .hosts
        .iter()
        .map(|host| {
            serde_json::json!({
                "name": host.name,
                "file": host.file,
                "stack": host.stack,
                "config_sha256": labels::config_sha256(&host.config),
                "plan": host.plan,
            })
        })
        .collect();
    let stacks: Vec<serde_json::Value> = stacks
        .iter()
        .map(|stack| {
            let first = &stack.hosts[0].plan;
            serde_json::json!({
                "key": stack.key,
                "base": first.image.base,
                "kernel": first.kernel,
                "modules": first.modules.iter().map(|m| &m.name).collect::<Vec<_>>(),
                "initramfs_files": first.files_in(Layer::Initramfs).map(|f| &f.path).collect::<Vec<_>>(),
                "hosts": stack.hosts.iter().map(|h| &h.name).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "hosts": hosts, "stacks": stacks })
}
