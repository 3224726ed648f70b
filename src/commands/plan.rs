use anyhow::Result;
use camino::Utf8Path;

use super::{load_config, print_json, refuse_with_hosts};
use crate::cli::PlanArgs;
use crate::config::signing::PemSource;
use crate::fleet::{Fleet, Stack};
use crate::image::labels;
use crate::plan::{Layer, ModulePlan, Plan};

pub(crate) fn run(args: &PlanArgs) -> Result<()> {
    let (config, source) = load_config(&args.config, &args.overrides.overrides())?;
    let plan = Plan::resolve(&config, &args.root.target())?;
    for warning in &plan.warnings {
        warnln!("{warning}");
    }
    for note in &plan.notes {
        noteln!("{note}");
    }
    if args.json {
        return print_json(&plan);
    }
    outln!(
        "Plan from {source}, CPU vendor {}",
        plan.cpu_vendor.as_str()
    );
    match &plan.host {
        Some(root) => outln!("For the host under {root}: its devices were read"),
        None => outln!(
            "For an image: from the config alone; no host was read, so host checks do not apply \
             (give --root to plan for a host)"
        ),
    }
    outln!("Image: {} -> {}", plan.image.base, plan.image.tag);
    outln!("Kernel arguments:");
    for karg in &plan.kargs {
        outln!("  {karg}");
    }
    if !plan.omitted_kargs.is_empty() {
        outln!("Left out of the guide's kernel arguments:");
        for omitted in &plan.omitted_kargs {
            outln!("  {}: {}", omitted.karg, omitted.reason);
        }
    }
    outln!("Initramfs drivers: {}", plan.initramfs_drivers.join(" "));
    outln!("Files:");
    for file in &plan.files {
        outln!("  {} ({:04o}, {} layer)", file.path, file.mode, file.layer);
    }
    match &plan.kernel {
        Some(kernel) => {
            outln!(
                "Kernel: replaced ({}) from {}",
                kernel.purpose,
                kernel.source
            );
            outln!(
                "  unless the base's kernel already carries the ACS override patch (checked at \
                 build time: {} in its System.map); then only the kernel argument is added",
                kernel.unless_symbol
            );
            outln!(
                "  removes only the old kernel's own packages (kernel.removes in `plan --json`), \
                 and refuses when other packages or build steps put modules in its directory"
            );
        }
        None => outln!("Kernel: the base image's"),
    }
    for module in &plan.modules {
        outln!("{}", module_line(module));
    }
    if let Some(line) = signing_line(&plan) {
        outln!("{line}");
    }
    Ok(())
}

/// What is signed, with which certificate, and where `build` reads the key; nothing when nothing is built.
fn signing_line(plan: &Plan) -> Option<String> {
    let signed = match (plan.modules.is_empty(), plan.kernel.is_some()) {
        (false, true) => "the modules and the kernel",
        (false, false) => "the modules",
        (true, true) => "the kernel",
        (true, false) => return None,
    };
    let Some(signing) = &plan.signing else {
        return Some(format!(
            "Signing: none ([signing] is not set): {signed} stay unsigned"
        ));
    };
    let cert = &signing.certificate;
    Some(format!(
        "Signing: {signed}, with the Machine Owner Key {} (certificate sha256 {}, from {}); \
         `build` reads the private key from {}",
        cert.subject,
        cert.sha256,
        source_text(&cert.source),
        source_text(&signing.key)
    ))
}

fn source_text(source: &PemSource) -> String {
    match source {
        PemSource::File { path } => path.to_string(),
        PemSource::Environment { variable } => format!("${variable}"),
    }
}

/// What is built and how, or, for a git source `plan` does not fetch, where its dkms.conf will be read.
fn module_line(module: &ModulePlan) -> String {
    let mut line = match module.dkms_conf() {
        Some(conf) => {
            let make: Vec<String> = conf.make.iter().map(ToString::to_string).collect();
            format!(
                "Module: {} {} from {}, built with `{}` against the image kernel; loads {}",
                conf.name,
                conf.version,
                module.origin(),
                make.join(" "),
                module.kernel_modules().join(", ")
            )
        }
        None => format!(
            "Module: from {}; its name, version and kernel modules are read once `generate` or \
             `build` fetched it",
            module.origin()
        ),
    };
    if let Some(headers) = &module.headers {
        line += &format!(
            "\n  kernel headers from {} when the image has none for its kernel",
            headers.dir
        );
    }
    line
}

/// `plan --hosts DIR`: every host's plan, grouped by the stack (base, kernel, modules, initramfs) it shares.
pub(crate) fn run_fleet(args: &PlanArgs, dir: &Utf8Path) -> Result<()> {
    let overrides = &args.overrides;
    refuse_with_hosts(&args.config, &overrides.plan, &overrides.image)?;
    let fleet = Fleet::load(dir, &overrides.overrides(), &args.root.target())?;
    for host in &fleet.hosts {
        for warning in &host.plan.warnings {
            warnln!("{}: {warning}", host.file);
        }
    }
    let stacks = fleet.stacks();
    if args.json {
        return print_json(&fleet_json(&fleet, &stacks));
    }
    outln!(
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
        let modules: Vec<&str> = first.modules.iter().map(|m| m.label()).collect();
        let initramfs: Vec<&str> = first
            .files_in(Layer::Initramfs)
            .map(|f| f.path.as_str())
            .collect();
        outln!(
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
            outln!("  {} -> {}", host.name, host.plan.image.tag);
            outln!("    {}", kargs.join(" "));
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
            let initramfs_files: Vec<_> =
                first.files_in(Layer::Initramfs).map(|f| &f.path).collect();
            serde_json::json!({
                "key": stack.key,
                "base": first.image.base,
                "kernel": first.kernel,
                "modules": first.modules.iter().map(|m| m.label()).collect::<Vec<_>>(),
                "initramfs_files": initramfs_files,
                "hosts": stack.hosts.iter().map(|h| &h.name).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "hosts": hosts, "stacks": stacks })
}
