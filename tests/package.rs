//! The Debian package as `contrib/build-deb` makes it (testbed/test builds it before the
//! tests run): lintian's verdict, its fields and conffiles, and, unpacked into a
//! throwaway root, the installed binary checking the installed configuration, the
//! installed unit verifying, the man pages rendering.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn deb() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("build/deb");
    let found = std::fs::read_dir(&dir)
        .ok()
        .and_then(|d| d.filter_map(|e| e.ok().map(|e| e.path())).find(|p| p.extension().is_some_and(|x| x == "deb")));
    found.unwrap_or_else(|| panic!("no package in {}: run contrib/build-deb (testbed/test does)", dir.display()))
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_debian_package_installs_a_working_mcgate() {
    let deb = deb();
    // lintian: nothing but its remark on running as root (the one override is explained
    // in contrib/debian/lintian-overrides)
    let (ok, text) = output(Command::new("lintian").arg(&deb));
    let tags: Vec<&str> = text.lines().filter(|l| !l.contains("running with root privileges")).collect();
    assert!(ok && tags.is_empty(), "{text}");

    let (_, depends) = output(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"));
    for d in ["adduser", "nftables", "iproute2", "libc6"] {
        assert!(depends.contains(d), "{depends}");
    }
    let root = std::env::temp_dir().join(format!("mcgate-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let control = root.join("DEBIAN");
    common::run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert!(conffiles.lines().any(|l| l == "/etc/mcgate/mcgate.toml"), "{conffiles}");
    assert!(conffiles.lines().any(|l| l == "/etc/mcgate/policies/example.toml"), "{conffiles}");
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system --group --home /var/lib/mcgate"), "{postinst}");
    // it neither enables nor starts the service: it has no RADIUS secret yet
    assert!(
        !postinst.contains("systemctl --system start") && !postinst.contains("deb-systemd-invoke start"),
        "{postinst}"
    );

    common::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let bin = root.join("usr/sbin/mcgate");
    // the installed configuration, its /etc/mcgate under the throwaway root, with a secret
    let etc = root.join("etc/mcgate");
    let cfg = etc.join("mcgate.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("/etc/mcgate/", &format!("{}/", etc.display()));
    std::fs::write(&cfg, text).unwrap();
    std::fs::write(etc.join("radius.secret"), "testing123\n").unwrap();
    std::fs::set_permissions(etc.join("radius.secret"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (ok, text) = output(Command::new(&bin).arg("check").arg("-c").arg(&cfg));
    assert!(ok && text.contains(": ok ("), "{text}");
    // the installed unit, its ExecStart at the unpacked binary
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/mcgate.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/sbin/mcgate run"), "{unit}");
    let moved = root.join("mcgate.service");
    std::fs::write(&moved, unit.replace("/usr/sbin/mcgate", bin.to_str().unwrap())).unwrap();
    let (ok, text) = output(Command::new("systemd-analyze").arg("verify").arg(&moved));
    assert!(ok && !text.contains("mcgate.service"), "{text}");
    // the man pages render, the completions are where the shells look
    let (ok, text) =
        output(Command::new("man").args(["-l", "-P", "cat"]).arg(root.join("usr/share/man/man8/mcgate.8.gz")));
    assert!(ok && text.contains("SYNOPSIS"), "{text}");
    for f in [
        "usr/share/bash-completion/completions/mcgate",
        "usr/share/zsh/vendor-completions/_mcgate",
        "usr/share/fish/vendor_completions.d/mcgate.fish",
        "usr/share/mcgate/freeradius/dictionary.mcgate",
        "usr/share/doc/mcgate/changelog.Debian.gz",
    ] {
        assert!(root.join(f).is_file(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&root);
}
