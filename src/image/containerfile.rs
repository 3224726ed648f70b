//! The Containerfile: containerfiles/Containerfile.j2 filled from a typed context in which Rust decides every
//! path, script and RUN line, so that the template, the scripts and Rust cannot disagree on one.
//!
//! Every RUN line is exec form, written one way: its `--mount=` options, then its argument vector as JSON. The
//! scripts of layers/scripts/ are installed together under [`LIBEXEC`] in each stage that runs them and find
//! each other there; whatever else they need (a mount point, package names, a stage's output directory) they
//! get as arguments from here.

use anyhow::{Result, bail};
use serde::Serialize;

use super::engine::Label;
use super::secrets::{MOK_CERT, MOK_KEY};
use crate::config::KernelSource;
use crate::mok;
use crate::plan::dkms_conf::{DebugInfo, DkmsConf};
use crate::plan::{self, KernelPlan, Plan, SigningPlan};

const TEMPLATE: &str = include_str!("../../containerfiles/Containerfile.j2");

/// Where the scripts are installed in each stage that runs them.
const LIBEXEC: &str = "/usr/libexec/passthru-image";

/// The build-time scripts, by name (layers/scripts/NAME, in the context under [`SCRIPTS_DIR`]).
const IMAGE_KERNEL: &str = "image-kernel";
const SWAP_KERNEL: &str = "swap-kernel";
const BUILD_KMODS: &str = "build-kmods";
const MOK_SIGN: &str = "mok-sign";
const DEPMOD_KERNEL: &str = "depmod-kernel";
const REGENERATE_INITRAMFS: &str = "regenerate-initramfs";
const LINT_IMAGE: &str = "lint-image";

/// Every script, with its text: the context carries them all.
pub(super) const SCRIPTS: &[(&str, &str)] = &[
    (
        IMAGE_KERNEL,
        include_str!("../../layers/scripts/image-kernel"),
    ),
    (
        SWAP_KERNEL,
        include_str!("../../layers/scripts/swap-kernel"),
    ),
    (
        BUILD_KMODS,
        include_str!("../../layers/scripts/build-kmods"),
    ),
    (MOK_SIGN, include_str!("../../layers/scripts/mok-sign")),
    (
        DEPMOD_KERNEL,
        include_str!("../../layers/scripts/depmod-kernel"),
    ),
    (
        REGENERATE_INITRAMFS,
        include_str!("../../layers/scripts/regenerate-initramfs"),
    ),
    (LINT_IMAGE, include_str!("../../layers/scripts/lint-image")),
];
pub(super) const SCRIPTS_DIR: &str = "scripts";

/// The context directories of the planned files, by the layer they go into.
pub(super) const INITRAMFS_LAYER: &str = "layers/initramfs";
pub(super) const HOST_LAYER: &str = "layers/host";

/// Context directories of local packages, which reach their build step through a bind mount at these places.
pub(super) const KERNEL_DIR: &str = "kernel";
const KERNEL_MOUNT: &str = "/run/passthru-kernel";
pub(super) const HEADERS_DIR: &str = "headers";
const HEADERS_MOUNT: &str = "/run/passthru-headers";

/// Where the signing steps mount the build secrets.
const SECRETS_DIR: &str = "/run/secrets";
/// Where the kernel's signing step mounts the base image's /usr/lib/modules, to tell a kernel the swap kept.
const BASE_MODULES_MOUNT: &str = "/run/passthru-base-modules";
/// Where a throwaway stage (the module builds, the kernel's signing) leaves what the final stage copies.
const STAGE_OUT: &str = "/out";

/// What the Containerfile is made from besides the plan: what rendering put into the context.
pub(super) struct Inputs<'a> {
    /// The sha256 of the SHA256SUMS of the local kernel packages in [`KERNEL_DIR`], when the plan has them.
    pub(super) kernel_sums: Option<&'a str>,
    pub(super) modules: &'a [ModuleBuild<'a>],
    /// A last LABEL instruction's labels (`build`'s).
    pub(super) labels: &'a [Label],
}

/// One module source in the context, built in the kmods stage.
pub(super) struct ModuleBuild<'a> {
    /// The source's directory in the context.
    pub(super) context_dir: String,
    pub(super) conf: &'a DkmsConf,
    /// The sha256 of the SHA256SUMS of its local header packages in [`HEADERS_DIR`], when it has some.
    pub(super) headers_sums: Option<String>,
}

/// A RUN line: its `--mount=...` options (each followed by a space), then its exec-form argument vector.
#[derive(Debug, Serialize)]
struct RunStep {
    mounts: String,
    argv: Vec<String>,
}

impl RunStep {
    fn script(name: &str, args: Vec<String>) -> RunStep {
        RunStep {
            mounts: String::new(),
            argv: std::iter::once(installed(name)).chain(args).collect(),
        }
    }

    fn mounted(mut self, mounts: String) -> RunStep {
        self.mounts = mounts + &self.mounts;
        self
    }
}

/// A throwaway or first step with the scripts it installs first (the sources of a COPY into [`LIBEXEC`]).
#[derive(Debug, Serialize)]
struct ScriptsStep {
    scripts: String,
    run: RunStep,
}

/// The kmods stage: its scripts, each module's source and build, and the signing of what they built.
#[derive(Debug, Serialize)]
struct KmodsStage {
    scripts: String,
    modules: Vec<ModuleStep>,
    signing: Option<RunStep>,
}

#[derive(Debug, Serialize)]
struct ModuleStep {
    context_dir: String,
    source_dir: String,
    run: RunStep,
}

/// The final stage's steps, in their order.
#[derive(Debug, Serialize)]
struct FinalStage {
    scripts: String,
    /// After the kmods stage's modules are copied in.
    depmod: Option<RunStep>,
    regenerate_initramfs: RunStep,
    lint: RunStep,
}

/// The template's whole context: every name it uses is a field here, and an unknown one fails the render.
#[derive(Debug, Serialize)]
struct Context<'a> {
    version: &'static str,
    base: &'a str,
    tag: &'a str,
    libexec: &'static str,
    stage_out: &'static str,
    initramfs_layer: &'static str,
    host_layer: &'static str,
    /// The engine options that lend the signing steps their secrets, for building the context by hand.
    secret_options: Option<String>,
    kernel_swap: Option<ScriptsStep>,
    kmods: Option<KmodsStage>,
    kernel_signing: Option<ScriptsStep>,
    last: FinalStage,
    labels: Vec<(&'a str, &'a str)>,
}

pub(super) fn render(plan: &Plan, inputs: &Inputs) -> Result<String> {
    // A LABEL value is expanded by the engine ($VAR) and ends at a quote: only plain values are written into
    // the Containerfile (the user's own --label values go on the engine's command line instead).
    if let Some(label) = inputs
        .labels
        .iter()
        .find(|l| !super::labels::is_plain_value(&l.value))
    {
        bail!(
            "label {} has a value the Containerfile cannot hold: {:?}",
            label.key,
            label.value
        );
    }
    let context = context(plan, inputs)?;
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_template("Containerfile", TEMPLATE)?;
    Ok(env.get_template("Containerfile")?.render(context)?)
}

fn context<'a>(plan: &'a Plan, inputs: &'a Inputs) -> Result<Context<'a>> {
    let signing = plan.signing.as_ref().filter(|_| plan.signs());
    let kernel_mount = inputs
        .kernel_sums
        .map(|_| bind_mount(KERNEL_DIR, KERNEL_MOUNT))
        .unwrap_or_default();
    let kernel_swap = match &plan.kernel {
        Some(kernel) => Some(kernel_swap(kernel, inputs.kernel_sums, &kernel_mount)?),
        None => None,
    };
    let kmods = (!inputs.modules.is_empty()).then(|| KmodsStage {
        scripts: scripts(&[IMAGE_KERNEL, BUILD_KMODS], signing.map(|_| MOK_SIGN), &[]),
        modules: inputs
            .modules
            .iter()
            .map(|module| module_step(module, inputs.kernel_sums.is_some(), &kernel_mount))
            .collect(),
        signing: signing.map(sign_modules),
    });
    let kernel_signing = match (&plan.kernel, signing) {
        (Some(_), Some(signing)) => Some(ScriptsStep {
            scripts: scripts(&[IMAGE_KERNEL, MOK_SIGN], None, &[]),
            run: sign_kernel(signing, plan.image.base.as_str()),
        }),
        _ => None,
    };
    let depmod = kmods
        .as_ref()
        .map(|_| RunStep::script(DEPMOD_KERNEL, Vec::new()));
    let last = FinalStage {
        scripts: scripts(
            &[IMAGE_KERNEL],
            depmod.as_ref().map(|_| DEPMOD_KERNEL),
            &[REGENERATE_INITRAMFS, LINT_IMAGE],
        ),
        depmod,
        regenerate_initramfs: RunStep::script(REGENERATE_INITRAMFS, Vec::new()),
        lint: RunStep::script(LINT_IMAGE, Vec::new()),
    };
    Ok(Context {
        version: env!("CARGO_PKG_VERSION"),
        base: plan.image.base.as_str(),
        tag: plan.image.tag.as_str(),
        libexec: LIBEXEC,
        stage_out: STAGE_OUT,
        initramfs_layer: INITRAMFS_LAYER,
        host_layer: HOST_LAYER,
        secret_options: signing.map(|_| secret_options()),
        kernel_swap,
        kmods,
        kernel_signing,
        last,
        labels: inputs
            .labels
            .iter()
            .map(|l| (l.key.as_str(), l.value.as_str()))
            .collect(),
    })
}

/// The path a script runs from.
fn installed(script: &str) -> String {
    format!("{LIBEXEC}/{script}")
}

/// The context paths of the scripts a stage runs, in the order it runs them, as a COPY into [`LIBEXEC`] lists
/// them: `first`, the `optional` one when there is one, then `then`.
fn scripts(first: &[&str], optional: Option<&str>, then: &[&str]) -> String {
    let paths: Vec<String> = first
        .iter()
        .chain(optional.as_ref())
        .chain(then)
        .map(|name| format!("{SCRIPTS_DIR}/{name}"))
        .collect();
    paths.join(" ")
}

fn bind_mount(source: &str, target: &str) -> String {
    format!("--mount=type=bind,source={source},target={target} ")
}

fn tmpfs_mounts(targets: &[&str]) -> String {
    targets
        .iter()
        .map(|target| format!("--mount=type=tmpfs,target={target} "))
        .collect()
}

/// The swap of the base's kernel for the ACS-override one, from local packages (bind-mounted, their sums on
/// the line) or from a repository. The package manager's caches and logs go to tmpfs.
fn kernel_swap(kernel: &KernelPlan, sums: Option<&str>, kernel_mount: &str) -> Result<ScriptsStep> {
    let mut args: Vec<String> = vec![
        "--unless-symbol".into(),
        kernel.unless_symbol.into(),
        "--rpm-packages".into(),
        kernel.removes.rpm.join(","),
        "--deb-packages".into(),
        kernel.removes.deb.join(","),
    ];
    let mounts = match (&kernel.source, sums) {
        (KernelSource::Packages { .. }, Some(sums)) => {
            args.extend(["packages".into(), KERNEL_MOUNT.into(), sums.into()]);
            kernel_mount.to_owned()
        }
        (KernelSource::Packages { dir, .. }, None) => {
            bail!("the kernel packages of {dir} are not in the build context")
        }
        (KernelSource::Repo { url }, _) => {
            let names = plan::acs_repository_packages().join(",");
            args.extend(["repo".into(), url.clone(), names]);
            String::new()
        }
    };
    let run = RunStep::script(SWAP_KERNEL, args)
        .mounted(mounts + &tmpfs_mounts(package_manager_scratch(&kernel.source)));
    Ok(ScriptsStep {
        scripts: scripts(&[IMAGE_KERNEL, SWAP_KERNEL], None, &[]),
        run,
    })
}

/// Where the package manager that swaps the kernel keeps caches and logs: tmpfs during the swap, so none of
/// it reaches the layer. All of /var/cache for dnf (dnf4 and dnf5 use different directories); only apt's part
/// on Debian, whose debconf keeps its database in /var/cache/debconf.
fn package_manager_scratch(source: &KernelSource) -> &'static [&'static str] {
    let debs = matches!(source, KernelSource::Packages { files, .. }
        if files.iter().any(|f| f.name.ends_with(".deb")));
    match debs {
        true => &["/var/cache/apt", "/var/log"],
        false => &["/var/cache", "/var/log"],
    }
}

/// build-kmods with everything it needs from the plan: the source and build directories, where the local
/// packages are, the modules the build must leave (each stripped of debug information unless dkms.conf says
/// not to), and after `--` the build command, whose `${kernelver}`-style placeholders the script fills.
fn module_step(module: &ModuleBuild, kernel_packages: bool, kernel_mount: &str) -> ModuleStep {
    let conf = module.conf;
    let mut args: Vec<String> = vec![
        "--name".into(),
        conf.name.clone(),
        "--version".into(),
        conf.version.clone(),
        "--source".into(),
        conf.source_dir(),
        "--build".into(),
        conf.build_dir(),
        "--out".into(),
        STAGE_OUT.into(),
    ];
    if kernel_packages {
        args.extend(["--kernel-packages".into(), KERNEL_MOUNT.into()]);
    }
    let mut mounts = kernel_mount.to_owned();
    if let Some(sums) = &module.headers_sums {
        args.extend([
            "--header-packages".into(),
            HEADERS_MOUNT.into(),
            "--header-sums".into(),
            sums.clone(),
        ]);
        mounts += &bind_mount(HEADERS_DIR, HEADERS_MOUNT);
    }
    for built in &conf.modules {
        let option = match built.debug_info {
            DebugInfo::Strip => "--module",
            DebugInfo::Keep => "--module-unstripped",
        };
        args.extend([option.into(), built.built_path()]);
    }
    args.push("--".into());
    args.extend(conf.make.iter().map(ToString::to_string));
    ModuleStep {
        context_dir: module.context_dir.clone(),
        source_dir: conf.source_dir(),
        run: RunStep::script(BUILD_KMODS, args).mounted(mounts),
    }
}

/// The key and the certificate, mounted for one step: never in the context, a layer or the history.
fn secret_mounts() -> String {
    [MOK_KEY, MOK_CERT]
        .iter()
        .map(|id| format!("--mount=type=secret,id={id},target={SECRETS_DIR}/{id} "))
        .collect()
}

/// The engine options a build by hand lends the signing steps the files of `mok new` with.
fn secret_options() -> String {
    format!(
        "--secret id={MOK_KEY},src={} --secret id={MOK_CERT},src={}",
        mok::KEY_FILE,
        mok::CERT_PEM_FILE
    )
}

/// mok-sign with the mounted secrets and the certificate's fingerprint, which the engine's layer cache sees:
/// another key signs again.
fn mok_sign(signing: &SigningPlan, mode_args: &[&str]) -> RunStep {
    let secrets = [
        "--key",
        &format!("{SECRETS_DIR}/{MOK_KEY}"),
        "--cert",
        &format!("{SECRETS_DIR}/{MOK_CERT}"),
        "--cert-sha256",
        &signing.certificate.sha256,
    ];
    let args = secrets.iter().chain(mode_args).map(|arg| arg.to_string());
    RunStep::script(MOK_SIGN, args.collect()).mounted(secret_mounts())
}

/// The modules, at the end of the kmods stage.
fn sign_modules(signing: &SigningPlan) -> RunStep {
    mok_sign(signing, &["modules", STAGE_OUT])
}

/// The replacement kernel, in a throwaway stage of its own (which installs sbsigntools and is left behind):
/// the base's /usr/lib/modules beside it tells a kernel the swap kept, which keeps its own signature.
fn sign_kernel(signing: &SigningPlan, base: &str) -> RunStep {
    mok_sign(signing, &["kernel", BASE_MODULES_MOUNT, STAGE_OUT]).mounted(format!(
        "--mount=type=bind,from={base},source=/usr/lib/modules,target={BASE_MODULES_MOUNT} "
    ))
}
