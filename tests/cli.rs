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
    assert!(err.contains("permission denied") && !err.contains("not running"), "{err}");
    drop(live);
    // a usage error is clap's 2
    let out = Command::new(MCGATE).args(["sessions", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn man_pages_render_and_bash_completes_the_commands() {
    let dir = std::env::temp_dir().join(format!("mcgate-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(MCGATE).arg("manpages").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for page in ["mcgate.8", "mcgate-run.8", "mcgate-sessions.8", "mcgate-acct-export.8", "mcgate-session-kick.8"] {
        let path = dir.join(page);
        let shown = Command::new("man").args(["-l", "-P", "cat"]).arg(&path).env("MANWIDTH", "100").output().unwrap();
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(shown.status.success() && text.contains("SYNOPSIS"), "{page}: {text}");
    }
    let top = Command::new("man").args(["-l", "-P", "cat"]).arg(dir.join("mcgate.8")).env("MANWIDTH", "200").output();
    let top = String::from_utf8_lossy(&top.unwrap().stdout).into_owned();
    assert!(top.contains("3 the daemon is not running"), "{top}");
    assert!(top.contains("mcgate-memberships(8)"), "{top}");
    let _ = std::fs::remove_dir_all(&dir);
    // bash: the script loads, and `mcgate se<TAB>` offers sessions, session (and nothing else)
    let script = Command::new(MCGATE).args(["completions", "bash"]).output().unwrap();
    assert!(script.status.success());
    let path = std::env::temp_dir().join(format!("mcgate-completion-{}.bash", std::process::id()));
    std::fs::write(&path, &script.stdout).unwrap();
    let probe = format!(
        "source {}; COMP_WORDS=(mcgate se); COMP_CWORD=1; COMP_LINE='mcgate se'; COMP_POINT=9; _mcgate mcgate se mcgate; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\" | sort",
        path.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let offered = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        offered.split_whitespace().collect::<Vec<_>>(),
        ["session", "sessions"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(path);
    for shell in ["zsh", "fish"] {
        let out = Command::new(MCGATE).args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("memberships"), "{shell}");
    }
}
