//! Just enough of a `dkms.conf` to know what a local module source builds: its name, version and modules.
//! The values go into paths and commands in the image build, so they are held to plain characters.

use camino::Utf8Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkmsConf {
    pub name: String,
    pub version: String,
    pub modules: Vec<String>,
}

pub fn read(dir: &Utf8Path) -> Result<DkmsConf, String> {
    let path = dir.join("dkms.conf");
    let text = crate::root::read_user_text(&path, crate::root::UserFile::DkmsConf, "dkms.conf")
        .map_err(|e| format!("{}; a local source needs a dkms.conf", e.message))?;
    parse(&text).map_err(|e| format!("{path}: {e}"))
}

fn parse(text: &str) -> Result<DkmsConf, String> {
    let mut name = None;
    let mut version = None;
    let mut modules = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').trim_matches('\'');
        match key.trim() {
            "PACKAGE_NAME" => name = Some(plain("PACKAGE_NAME", value)?),
            "PACKAGE_VERSION" => version = Some(plain("PACKAGE_VERSION", value)?),
            k if k.starts_with("BUILT_MODULE_NAME[") => modules.push(plain(k, value)?),
            _ => {}
        }
    }
    let name = name.ok_or("no PACKAGE_NAME")?;
    let version = version.ok_or("no PACKAGE_VERSION")?;
    if modules.is_empty() {
        // dkms's own default: one module named after the package.
        modules.push(name.clone());
    }
    Ok(DkmsConf {
        name,
        version,
        modules,
    })
}

fn plain(key: &str, value: &str) -> Result<String, String> {
    if crate::text_rules::is_plain_name(value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{key}={value:?}: {}",
            crate::text_rules::PLAIN_NAME_RULE
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_version_and_modules() {
        let conf = parse(
            "PACKAGE_NAME=\"vendor-reset\"\nPACKAGE_VERSION=\"0.1.1\"\nBUILT_MODULE_NAME[0]=\"vendor-reset\"\n\
             MAKE[0]=\"make KDIR=${kernel_source_dir}\"\nAUTOINSTALL=\"yes\"\n",
        )
        .unwrap();
        assert_eq!(
            conf,
            DkmsConf {
                name: "vendor-reset".into(),
                version: "0.1.1".into(),
                modules: vec!["vendor-reset".into()]
            }
        );
    }

    #[test]
    fn refuses_missing_or_unsafe_values() {
        assert!(
            parse("PACKAGE_VERSION=1\n")
                .unwrap_err()
                .contains("PACKAGE_NAME")
        );
        assert!(parse("PACKAGE_NAME=x\nPACKAGE_VERSION=\"1 && reboot\"\n").is_err());
        assert_eq!(
            parse("PACKAGE_NAME=x\nPACKAGE_VERSION=1\n")
                .unwrap()
                .modules,
            ["x"]
        );
    }
}
