use anyhow::Result;

use super::{load_config, print_json};
use crate::cli::{Cli, OverrideArgs};
use crate::plan::{ModulePlan, Plan};

pub fn run(cli: &Cli, overrides: &OverrideArgs, json: bool) -> Result<()> {
    let (config, source) = load_config(cli, overrides)?;
    let plan = Plan::resolve(&config, &cli.image_target())?;
    for warning in &plan.warnings {
        errln!("warning: {warning}");
    }
    for note in &plan.notes {
        errln!("note: {note}");
    }
    if json {
        return print_json(&plan);
    }
    outln!(
        "Plan from {source}, CPU vendor {}",
        plan.cpu_vendor.as_str()
    );
    match &plan.host {
        Some(root) => outln!("For the host under {root}: its devices were read"),
        None => outln!(
            "For an image: from the config alone; no host was read, so host checks do not apply (give --root \
             to plan for a host)"
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
        outln!(
            "  {} ({:04o}, {} layer)",
            file.path,
            file.mode,
            serde_json::to_value(file.layer)?.as_str().unwrap_or("?")
        );
    }
    match &plan.kernel {
        Some(kernel) => {
            outln!(
                "Kernel: replaced ({}) from {}",
                kernel.purpose,
                serde_json::to_string(&kernel.source)?
            );
            outln!(
                "  unless the base's kernel already carries the ACS override patch (checked at build time: \
                 {} in its System.map); then only the kernel argument is added",
                kernel.unless_symbol
            );
            outln!(
                "  removes only the old kernel's own packages (kernel.removes in `plan --json`), and refuses \
                 when other packages or build steps put modules in its directory"
            );
        }
        None => outln!("Kernel: the base image's"),
    }
    for module in &plan.modules {
        outln!("{}", module_line(module));
    }
    Ok(())
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
            "Module: from {}; its name, version and kernel modules are read once `generate` or `build` \
             fetched it",
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
