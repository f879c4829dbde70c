//! The binary's own behaviour for an operator: config checking and clear errors.

use std::process::Command;

const MCGATE: &str = env!("CARGO_BIN_EXE_mcgate");

/// A directory of its own per call: the tests run in parallel.
fn dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("mcgate-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("secret"), "s3cret\n").unwrap();
    d
}

fn config(extra: &str) -> std::path::PathBuf {
    let d = dir();
    let text = format!(
        "[switch]\nbridge = \"br0\"\n{extra}\n[radius]\n[[radius.server]]\naddress = \"127.0.0.1:1812\"\n\
         secret_file = \"secret\"\n[[port]]\nname = \"p1\"\n"
    );
    let path = d.join(format!("c{}.toml", extra.len()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_accepts_a_good_config() {
    let out = Command::new(MCGATE).args(["check", "-c"]).arg(config("")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 ports, 1 RADIUS servers)"));
}

#[test]
fn check_rejects_an_unknown_key_with_file_and_line() {
    let path = config("brdige = \"br1\"");
    let out = Command::new(MCGATE).args(["check", "-c"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3: unknown field `brdige`", path.display())), "{err}");
}

#[test]
fn the_cli_says_when_the_daemon_is_not_running_and_exits_3() {
    // no socket at all, and a socket file nothing listens on (left by a killed daemon)
    let dir = std::env::temp_dir().join(format!("mcgate-cli-exit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    for socket in [std::path::Path::new("/nonexistent/mcgate.sock"), &stale] {
        for cmd in ["sessions", "memberships", "status"] {
            let out = Command::new(MCGATE).args([cmd, "-s"]).arg(socket).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(3), "{cmd} {}: {err}", socket.display());
            assert!(err.contains("mcgate is not running"), "{err}");
        }
    }
    // a socket this user may not reach is an error (1), not "not running"
    let private = dir.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let live = std::os::unix::net::UnixListener::bind(private.join("control.sock")).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", MCGATE, "status", "-s"])
        .arg(private.join("control.sock"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Permission denied") && !err.contains("not running"), "{err}");
    drop(live);
    // a usage error is clap's 2
    let out = Command::new(MCGATE).args(["sessions", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
