use super::*;

/// The documented reference of every key and what omitting it means.
const DEFAULT_TOML: &str = include_str!("default.toml");

#[test]
fn embedded_default_file_matches_the_defaults_of_omitted_keys() {
    let from_file = Config::from_toml(DEFAULT_TOML, "default.toml").unwrap();
    assert_eq!(from_file, Config::default());
    assert_eq!(
        Config::from_toml("", "empty.toml").unwrap(),
        Config::default()
    );
}

#[test]
fn reads_a_full_config() {
    let config = Config::from_toml(
        r#"
        [image]
        base = "ghcr.io/ublue-os/bazzite:stable"
        digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        tag = "ghcr.io/me/bazzite-vfio:latest"
        [cpu]
        vendor = "amd"
        sev = false
        ignore-msrs = true
        [vfio]
        ids = ["10DE:2684", "10de:22ba"]
        addresses = ["0A:00.0", "0000:0a:00.1"]
        [gpu]
        vendors = ["nvidia"]
        [kargs]
        extra = ["quiet", "split_lock_detect=off"]
        "#,
        "test.toml",
    )
    .unwrap();
    assert_eq!(config.cpu.vendor, CpuChoice::Amd);
    assert!(!config.cpu.sev && config.cpu.npt && config.cpu.ignore_msrs);
    assert_eq!(
        config.vfio.ids,
        [PciId::new(0x10de, 0x2684), PciId::new(0x10de, 0x22ba)]
    );
    assert_eq!(
        config.vfio.addresses,
        [
            "0000:0a:00.0".parse().unwrap(),
            "0000:0a:00.1".parse().unwrap()
        ] as [PciAddress; 2]
    );
    assert_eq!(config.gpu.vendors, [GpuVendor::Nvidia]);
    assert_eq!(config.kargs.extra.len(), 2);
}

/// Each bad config names the field and says what is allowed.
#[test]
fn bad_configs_are_refused_with_the_field_named() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[vfio]\nids = [\"10de:22ba\", \"10de\"]\n",
            "vfio.ids[1]",
            "vvvv:dddd",
        ),
        ("[vfio]\nidz = []\n", "vfio.idz", "unknown field"),
        (
            "[vfio]\naddresses = [\"02:00.0\", \"02:00\"]\n",
            "vfio.addresses[1]",
            "bb:ss.f",
        ),
        ("[gpus]\n", "gpus", "unknown field"),
        ("[cpu]\nvendor = \"arm\"\n", "cpu.vendor", "intel"),
        ("[cpu]\nnested = \"yes\"\n", "cpu.nested", "bool"),
        (
            "[gpu]\nvendors = [\"matrox\"]\n",
            "gpu.vendors[0]",
            "nvidia",
        ),
        (
            "[kargs]\nextra = [\"quiet splash\"]\n",
            "kargs.extra[0]",
            "whitespace",
        ),
        (
            "[kargs]\nextra = [\"a=\\\"b\\\"\"]\n",
            "kargs.extra[0]",
            "not allowed",
        ),
        (
            "[image]\nbase = \"Quay.io/x y\"\n",
            "image.base",
            "image reference",
        ),
        (
            "[image]\ndigest = \"sha256:abc\"\n",
            "image.digest",
            "64 lowercase hex",
        ),
        ("[image]\ntag = \"x:\"\n", "image.tag", "tag"),
        (
            "[vendor-reset]\nenabled = \"maybe\"\n",
            "vendor-reset.enabled",
            "auto",
        ),
        (
            "[vendor-reset]\ngit = \"https://example.org/vr.git\"\n",
            "vendor-reset.commit",
            "40-hex",
        ),
        (
            "[vendor-reset]\ncommit = \"main\"\n",
            "vendor-reset.commit",
            "40 lowercase hex",
        ),
        (
            "[vendor-reset]\ngit = \"file:///x;rm\"\ncommit = \
             \"084881c6e9e11bdadaf05798e669568848e698a3\"\n",
            "vendor-reset.git",
            "URL",
        ),
        (
            "[vendor-reset]\ngit = \"git://github.com/gnif/vendor-reset.git\"\ncommit = \
             \"084881c6e9e11bdadaf05798e669568848e698a3\"\n",
            "vendor-reset.git",
            "https",
        ),
        (
            "[vendor-reset]\ngit = \"ssh://-oProxyCommand=x/vr.git\"\ncommit = \
             \"084881c6e9e11bdadaf05798e669568848e698a3\"\n",
            "vendor-reset.git",
            "may not start with `-`",
        ),
        (
            "[vendor-reset]\ngit = \"ssh://git@-oProxyCommand=x/vr.git\"\ncommit = \
             \"084881c6e9e11bdadaf05798e669568848e698a3\"\n",
            "vendor-reset.git",
            "may not start with `-`",
        ),
        (
            "[vendor-reset]\ngit = \"file://host/srv/vr.git\"\ncommit = \
             \"084881c6e9e11bdadaf05798e669568848e698a3\"\n",
            "vendor-reset.git",
            "file:///path",
        ),
        (
            "[vendor-reset]\nheaders-sha256 = { \"a.deb\" = \"00\" }\n",
            "vendor-reset.headers-sha256",
            "only applies to local `headers`",
        ),
        (
            "[vendor-reset]\nheaders = \"/nonexistent/headers\"\n",
            "vendor-reset.headers",
            "cannot read directory",
        ),
        (
            "[acs-override]\nenabled = true\nrepo = \"http://example.org/acs.repo\"\n",
            "acs-override.repo",
            "https",
        ),
        (
            "[vendor-reset]\npath = \"/src\"\ngit = \"https://a/b\"\n",
            "vendor-reset.path",
            "not both",
        ),
        (
            "[acs-override]\nenabled = true\n",
            "acs-override",
            "kernel source",
        ),
        (
            "[acs-override]\nmode = [\"upstream\"]\n",
            "acs-override.mode[0]",
            "downstream",
        ),
        (
            "[acs-override]\nmode = []\n",
            "acs-override.mode",
            "at least one",
        ),
        (
            "[acs-override]\nenabled = true\nrepo = \"https://x/y.txt\"\n",
            "acs-override.repo",
            ".repo",
        ),
        (
            "[acs-override]\nenabled = true\npackages = \"/nonexistent/dir\"\n",
            "acs-override.packages",
            "cannot read",
        ),
        ("not toml at all [", "bad.toml", "TOML"),
    ];
    for (text, field, allowed) in cases {
        let err = Config::from_toml(text, "bad.toml").unwrap_err();
        let input = err
            .downcast_ref::<InputError>()
            .unwrap_or_else(|| panic!("{text:?}: not an input error: {err:#}"));
        assert!(
            input.field.contains(field),
            "{text:?}: field {:?} does not name {field:?}",
            input.field
        );
        assert!(
            input.to_string().contains(allowed),
            "{text:?}: {input} does not say {allowed:?}"
        );
    }
}

#[test]
fn too_many_acs_ids_are_refused() {
    let ids: Vec<String> = (0..16).map(|i| format!("\"1022:{i:04x}\"")).collect();
    let text = format!("[acs-override]\nids = [{}]\n", ids.join(","));
    let err = Config::from_toml(&text, "bad.toml")
        .unwrap_err()
        .downcast::<InputError>()
        .unwrap();
    assert!(
        err.field.ends_with("acs-override.ids") && err.message.contains("at most 15"),
        "{err}"
    );
}

#[test]
fn overrides_replace_config_values_and_drop_the_digest_with_the_base() {
    let config = Config::from_toml(
        "[image]\ndigest = \
         \"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n",
        "t.toml",
    )
    .unwrap();
    let o = Overrides {
        cpu: Some(CpuChoice::Intel),
        gpu: Some(vec![GpuVendor::Amd]),
        vfio_ids: Some(vec![PciId::new(0x1002, 0x67df)]),
        base: Some("localhost/base:1".parse().unwrap()),
        tag: None,
    };
    let config = config.with_overrides(&o);
    assert_eq!(config.cpu.vendor, CpuChoice::Intel);
    assert_eq!(config.gpu.vendors, [GpuVendor::Amd]);
    assert_eq!(config.image.base.as_str(), "localhost/base:1");
    assert_eq!(config.image.digest, None);
}

#[test]
fn local_kernel_packages_are_listed_and_their_sums_checked_for_form() {
    let dir = tempfile::tempdir().unwrap();
    let path = camino::Utf8Path::from_path(dir.path()).unwrap();
    std::fs::write(path.join("linux-image-6.1.0-99-amd64.deb"), b"x").unwrap();
    std::fs::write(path.join("notes.txt"), b"ignored").unwrap();
    let text = format!("[acs-override]\nenabled = true\npackages = \"{path}\"\n");
    let config = Config::from_toml(&text, "t.toml").unwrap();
    match config.kernel_source().unwrap() {
        KernelSource::Packages { files, .. } => {
            assert_eq!(files[0].name, "linux-image-6.1.0-99-amd64.deb")
        }
        other => panic!("{other:?}"),
    }
    let bad = format!("{text}sha256 = {{ \"linux-image-6.1.0-99-amd64.deb\" = \"xyz\" }}\n");
    assert!(Config::from_toml(&bad, "t.toml").is_err());
    // An uppercase sum is the same digest; it is compared in lowercase.
    let upper = format!(
        "{text}sha256 = {{ \"linux-image-6.1.0-99-amd64.deb\" = \"{}\" }}\n",
        "AB".repeat(32)
    );
    match Config::from_toml(&upper, "t.toml")
        .unwrap()
        .kernel_source()
        .unwrap()
    {
        KernelSource::Packages { files, .. } => {
            assert_eq!(files[0].sha256.as_deref(), Some("ab".repeat(32).as_str()))
        }
        other => panic!("{other:?}"),
    }
    let unknown = format!(
        "{text}sha256 = {{ \"other.deb\" = \"{}\" }}\n",
        "0".repeat(64)
    );
    assert!(Config::from_toml(&unknown, "t.toml").is_err());
}

#[test]
fn relative_source_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let dir = camino::Utf8Path::from_path(dir.path()).unwrap();
    std::fs::create_dir(dir.join("kernel")).unwrap();
    std::fs::write(dir.join("kernel/linux-image-6.1.0-99-amd64.deb"), b"x").unwrap();
    let text = "[vendor-reset]\npath = \"src/vr\"\n[acs-override]\nenabled = true\npackages = \
                \"kernel\"\n";
    let config = Config::from_toml(text, dir.join("passthru.toml").as_str()).unwrap();
    assert_eq!(config.vendor_reset.path.unwrap(), dir.join("src/vr"));
    assert_eq!(config.acs_override.packages.unwrap(), dir.join("kernel"));
}

#[test]
fn serialized_config_has_no_empty_tables_or_unset_keys_and_reads_back() {
    let text = toml::to_string(&Config::default()).unwrap();
    assert!(!text.contains("[acs-override.sha256]"), "{text}");
    for unset in ["digest", "git", "commit", "path", "repo", "packages"] {
        assert!(
            !text.lines().any(|l| l.starts_with(&format!("{unset} "))),
            "{unset} is unset but written:\n{text}"
        );
    }
    assert_eq!(
        Config::from_toml(&text, "t.toml").unwrap(),
        Config::default()
    );

    let dir = tempfile::tempdir().unwrap();
    let path = camino::Utf8Path::from_path(dir.path()).unwrap();
    std::fs::write(path.join("linux-image-6.1.0-99-amd64.deb"), b"x").unwrap();
    let sum = "0".repeat(64);
    let with_sums = format!(
        "[acs-override]\nenabled = true\npackages = \"{path}\"\nsha256 = {{ \
         \"linux-image-6.1.0-99-amd64.deb\" = \"{sum}\" }}\n"
    );
    let config = Config::from_toml(&with_sums, "t.toml").unwrap();
    let text = toml::to_string(&config).unwrap();
    assert!(text.contains(&sum), "{text}");
    assert_eq!(Config::from_toml(&text, "t.toml").unwrap(), config);
}

#[test]
fn a_kernel_package_that_does_not_match_its_sum_is_bad_input() {
    use crate::config::sources::KernelPackage;
    let dir = tempfile::tempdir().unwrap();
    let path = camino::Utf8Path::from_path(dir.path()).unwrap();
    std::fs::write(path.join("k.deb"), b"kernel").unwrap();
    // sha256 of "kernel".
    let sum = "6923dd1bc0460082c5d55a831908c24a282860b7f1cd6c2b79cf1bc8857c639c";
    let package = |sha256: &str| KernelPackage {
        name: "k.deb".into(),
        sha256: Some(sha256.into()),
    };
    let (bytes, actual) = package(sum)
        .read_checked(path)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((bytes.as_slice(), actual.as_str()), (&b"kernel"[..], sum));
    let err = package(&"0".repeat(64)).read_checked(path).unwrap_err();
    assert_eq!(err.field, "acs-override.sha256.k.deb");
    assert!(err.message.contains(sum), "{err}");
}

#[test]
fn module_sources_over_https_ssh_and_file_are_accepted() {
    for url in [
        "https://github.com/gnif/vendor-reset.git",
        "ssh://git@example.org/vr.git",
        "ssh://example.org:2222/vr.git",
        "file:///srv/git/vendor-reset",
    ] {
        let text = format!(
            "[vendor-reset]\ngit = \"{url}\"\ncommit = \
             \"084881c6e9e11bdadaf05798e669568848e698a3\"\n"
        );
        let config = Config::from_toml(&text, "t.toml").unwrap_or_else(|e| panic!("{url}: {e:#}"));
        let source = config.vendor_reset_source().unwrap();
        assert!(matches!(source, ModuleSource::Git { url: u, .. } if u == url));
    }
}

#[test]
fn local_header_packages_are_relative_to_the_config_and_checked_like_kernel_packages() {
    let dir = tempfile::tempdir().unwrap();
    let dir = camino::Utf8Path::from_path(dir.path()).unwrap();
    std::fs::create_dir(dir.join("headers")).unwrap();
    let deb = "linux-headers-6.1.0-50-amd64_6.1.176-1_amd64.deb";
    std::fs::write(dir.join("headers").join(deb), b"x").unwrap();
    let text = format!(
        "[vendor-reset]\nheaders = \"headers\"\nheaders-sha256 = {{ \"{deb}\" = \"{}\" }}\n",
        "0".repeat(64)
    );
    let config = Config::from_toml(&text, dir.join("passthru.toml").as_str()).unwrap();
    let headers = config.vendor_reset_headers().unwrap().unwrap();
    assert_eq!(headers.dir, dir.join("headers"));
    assert_eq!(headers.files[0].name, deb);
    // The sum is checked where the package is read (the build context), naming the key.
    let err = headers.files[0]
        .read_checked_as(
            &headers.dir,
            crate::config::sources::PackageKeys::ModuleHeaders,
        )
        .unwrap_err();
    assert_eq!(err.field, format!("vendor-reset.headers-sha256.{deb}"));
    // The written config reads back the same.
    let written = toml::to_string(&config).unwrap();
    assert_eq!(Config::from_toml(&written, "t.toml").unwrap(), config);
}

#[test]
fn signing_paths_are_relative_to_the_config_and_a_left_out_one_is_its_variable() {
    use crate::config::signing::{CERT_ENV, KEY_ENV, PemSource};
    let text = "[signing]\nkey = \"mok/MOK.key\"\ncert = \"/etc/mok/MOK.pem\"\n";
    let config = Config::from_toml(text, "/fleet/hosts/desk.toml").unwrap();
    let signing = config.signing.clone().unwrap();
    assert_eq!(
        signing.key_source(),
        PemSource::File {
            path: "/fleet/hosts/mok/MOK.key".into()
        }
    );
    assert_eq!(
        signing.cert_source(),
        PemSource::File {
            path: "/etc/mok/MOK.pem".into()
        }
    );
    let written = toml::to_string(&config).unwrap();
    assert_eq!(Config::from_toml(&written, "t.toml").unwrap(), config);

    // An empty section signs with what the environment holds (CI).
    let empty = Config::from_toml("[signing]\n", "t.toml").unwrap();
    let signing = empty.signing.unwrap();
    assert_eq!(
        signing.key_source(),
        PemSource::Environment { variable: KEY_ENV }
    );
    assert_eq!(
        signing.cert_source(),
        PemSource::Environment { variable: CERT_ENV }
    );
    assert_eq!(Config::from_toml("", "t.toml").unwrap().signing, None);
    let err = Config::from_toml("[signing]\nkey-file = \"k\"\n", "t.toml").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("t.toml: signing.key-file: unknown field"),
        "{err}"
    );
}

#[test]
fn a_kernel_source_reads_for_people() {
    let repo = KernelSource::Repo {
        url: "https://example.org/acs.repo".into(),
    };
    assert_eq!(
        repo.to_string(),
        "the repository https://example.org/acs.repo"
    );
    let package = |name: &str| sources::KernelPackage {
        name: name.into(),
        sha256: None,
    };
    let packages = KernelSource::Packages {
        dir: "/srv/acs".into(),
        files: vec![package("kernel-core-6.11.rpm"), package("kernel-6.11.rpm")],
    };
    assert_eq!(
        packages.to_string(),
        "kernel-core-6.11.rpm, kernel-6.11.rpm in /srv/acs"
    );
}
