//! What ships around the binary, checked: the shell completions and the man page generated
//! from the command line's definition, the systemd unit (with `systemd-analyze`) and the
//! Dockerfile (its rules, parsed here: there is no Debian package of hadolint), the example
//! config; what `validate` checks without connecting anywhere; and how a run that never
//! reached its exchange ends.
//!
//! The tools (systemd-analyze, groff, man, zsh, fish) come from `.ci/services.d/deploy-lint.sh`.
//! A test whose tool is missing says so and passes, unless `CI` is set: then it fails.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crypto-feeder"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).stdin(Stdio::null()).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Whether `tool` is on `PATH`. Missing: the test is skipped with a message, or fails under
/// `CI`.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is not installed (bash .ci/services installs it)"
        );
        eprintln!("SKIPPED: {tool} is not installed (bash .ci/services installs it)");
    }
    found
}

/// The subcommands, as `--help` lists them (so that a new one is covered without a change
/// here), without clap's own `help`.
fn subcommands() -> Vec<String> {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let list: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect();
    assert!(list.len() >= 6 && list.iter().any(|n| n == "man"), "{text}");
    list
}

/// Asserts that no cause appears twice on an error line: each `: `-separated part is there
/// once.
fn each_cause_once(line: &str) {
    let parts: Vec<&str> = line.split(": ").map(str::trim).collect();
    for (i, p) in parts.iter().enumerate() {
        if p.len() > 3 {
            assert!(
                !parts[i + 1..].contains(p),
                "{p:?} appears twice in:\n{line}"
            );
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

// ---- completions ------------------------------------------------------------------------

#[test]
fn bash_completion_parses_and_completes_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["completions", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = write(dir.path(), "crypto-feeder.bash", &stdout(&out));
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "bash -n: {}", stderr(&check));

    // Load it and ask it what follows `crypto-feeder `, as bash does on <Tab>.
    let text = stdout(&out);
    let function = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("complete -F ")?
                .split_whitespace()
                .next()
        })
        .expect("the script registers a completion function");
    let probe = format!(
        "source {}; COMP_WORDS=(crypto-feeder ''); COMP_CWORD=1; {function} crypto-feeder '' crypto-feeder; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let offered = Command::new("bash").args(["-c", &probe]).output().unwrap();
    assert!(offered.status.success(), "{}", stderr(&offered));
    let offered = stdout(&offered);
    let words: Vec<&str> = offered.lines().collect();
    for sub in subcommands() {
        assert!(
            words.contains(&sub.as_str()),
            "{sub} not offered: {words:?}"
        );
    }
    assert!(words.contains(&"--verbose"), "{words:?}");
}

#[test]
fn zsh_and_fish_completions_parse() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, check) in [("zsh", &["-n"][..]), ("fish", &["--no-execute"][..])] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        for sub in subcommands() {
            assert!(text.contains(&sub), "{shell}: {sub} missing");
        }
        if !have(shell) {
            continue;
        }
        let script = write(dir.path(), &format!("completion.{shell}"), &text);
        let parsed = Command::new(shell)
            .args(check)
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            parsed.status.success(),
            "{shell} {check:?}: {}{}",
            stdout(&parsed),
            stderr(&parsed)
        );
    }
}

#[test]
fn every_shell_clap_knows_has_completions_and_an_unknown_one_is_refused() {
    for shell in ["bash", "elvish", "fish", "powershell", "zsh"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("crypto-feeder"), "{shell}");
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(stderr(&out).contains("tcsh"), "{}", stderr(&out));
}

// ---- man page ---------------------------------------------------------------------------

/// Renders a roff page with groff, failing on any warning (`-ww`), and returns the text.
fn groff(page: &Path) -> String {
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
        .arg(page)
        .output()
        .unwrap();
    assert!(out.status.success(), "groff: {}", stderr(&out));
    assert_eq!(stderr(&out), "", "groff warns about {}", page.display());
    stdout(&out)
}

#[test]
fn man_page_renders_and_names_every_subcommand_and_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let roff = stdout(&out);
    assert!(
        roff.starts_with(".ie ") || roff.starts_with(".TH "),
        "{roff}"
    );
    let page = write(dir.path(), "crypto-feeder.1", &roff);
    if !have("groff") {
        return;
    }
    let text = groff(&page);
    for heading in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "COMMANDS",
        "EXIT STATUS",
        "ENVIRONMENT",
    ] {
        assert!(
            text.lines().any(|l| l.trim_end() == heading),
            "no {heading} section:\n{text}"
        );
    }
    for sub in subcommands() {
        assert!(
            text.contains(&format!("crypto-feeder {sub}")),
            "{sub} missing:\n{text}"
        );
    }
    for option in ["--config", "--online", "--rest-url", "--dir"] {
        assert!(text.contains(option), "{option} missing");
    }
    let status = text
        .split("EXIT STATUS")
        .nth(1)
        .unwrap()
        .split("ENVIRONMENT")
        .next()
        .unwrap();
    for code in ["0", "1", "2", "3", "4", "5", "130"] {
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().next() == Some(code)),
            "exit status {code} not described:\n{status}"
        );
    }

    if have("man") {
        let out = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(&page)
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(out.status.success(), "man -l: {}", stderr(&out));
        assert!(stdout(&out).contains("EXIT STATUS"));
    }
}

#[test]
fn man_dir_writes_a_page_per_command_that_man_finds() {
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man/man1");
    let out = run(&["man", "--dir", man1.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut expected = vec!["crypto-feeder.1".to_owned()];
    expected.extend(subcommands().iter().map(|s| format!("crypto-feeder-{s}.1")));
    for name in &expected {
        let page = man1.join(name);
        assert!(page.is_file(), "{name} not written: {}", stdout(&out));
        assert!(stdout(&out).contains(&page.display().to_string()));
        if have("groff") {
            groff(&page);
        }
    }
    if have("man") {
        // Installed under a MANPATH, `man crypto-feeder` finds it.
        let out = Command::new("man")
            .args(["-w", "crypto-feeder"])
            .env("MANPATH", dir.path().join("man"))
            .output()
            .unwrap();
        assert!(out.status.success(), "man -w: {}", stderr(&out));
        assert!(stdout(&out).trim().ends_with("man1/crypto-feeder.1"));
    }
}

// ---- systemd unit -----------------------------------------------------------------------

fn unit_text() -> String {
    std::fs::read_to_string(repo().join("deploy/crypto-feeder.service")).unwrap()
}

/// The values of `key` in the unit, in order.
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn service_unit_has_the_restart_policy_and_hardening_it_promises() {
    let text = unit_text();
    for (key, value) in [
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "crypto-feeder"),
        ("CapabilityBoundingSet", ""),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(unit_values(&text, key), [value], "{key}");
    }
    // The stop timeout leaves room for the default 30s graceful shutdown.
    let stop = unit_values(&text, "TimeoutStopSec");
    let secs: u64 = stop[0].trim_end_matches('s').parse().unwrap();
    assert!(secs > 30, "TimeoutStopSec={secs}");
    // The config is checked before the run, without connecting.
    assert_eq!(
        unit_values(&text, "ExecStartPre"),
        ["/usr/local/bin/crypto-feeder validate"]
    );
    assert_eq!(
        unit_values(&text, "ExecStart"),
        ["/usr/local/bin/crypto-feeder run"]
    );
}

#[test]
fn service_unit_passes_systemd_analyze_verify_and_security() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // verify wants the binary and the documented man page to exist: point it at this build
    // and at pages generated here.
    let unit = unit_text().replace(
        "/usr/local/bin/crypto-feeder",
        env!("CARGO_BIN_EXE_crypto-feeder"),
    );
    let path = write(dir.path(), "crypto-feeder.service", &unit);
    let man1 = dir.path().join("man/man1");
    assert!(run(&["man", "--dir", man1.to_str().unwrap()])
        .status
        .success());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && stderr(&out).trim().is_empty(),
        "systemd-analyze verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
    // An exposure score (0 safest, 10 unsafe); the unit keeps the network, little else.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for crypto-feeder.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(score <= 2.0, "exposure {score}:\n{report}");
}

// ---- Dockerfile -------------------------------------------------------------------------

/// One instruction of a Dockerfile: the keyword in upper case and its arguments, with
/// continuation lines joined and comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

fn workspace_rust_version() -> (u32, u32) {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let v = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

#[test]
fn dockerfile_follows_the_rules_that_matter() {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let all = instructions(&text);
    let froms: Vec<&String> = all
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].ends_with(" AS build"),
        "the first stage builds: {}",
        froms[0]
    );

    // Pinned bases: an explicit tag that is not `latest`, or a digest.
    for from in &froms {
        let image = from.split_whitespace().next().unwrap();
        let pinned = image.contains("@sha256:")
            || image
                .rsplit_once(':')
                .is_some_and(|(_, tag)| !tag.is_empty() && tag != "latest" && !tag.contains('/'));
        assert!(pinned, "unpinned base image {image}");
    }
    // The build image's Rust is at least the workspace's rust-version.
    let rust = froms[0]
        .strip_prefix("rust:")
        .and_then(|t| t.split('-').next())
        .expect("built with the rust image");
    let mut v = rust.split('.').map(|p| p.parse::<u32>().unwrap());
    let image_version = (v.next().unwrap(), v.next().unwrap());
    assert!(
        image_version >= workspace_rust_version(),
        "rust:{rust} is older than the workspace's rust-version {:?}",
        workspace_rust_version()
    );
    assert!(
        all.iter()
            .any(|(k, a)| k == "RUN" && a.contains("cargo build --release --locked")),
        "the build uses the lock file"
    );

    // The final stage: copies the binary from the build, runs as a user that is not root.
    let last_from = all.iter().rposition(|(k, _)| k == "FROM").unwrap();
    let last = &all[last_from..];
    assert!(
        last.iter()
            .any(|(k, a)| k == "COPY" && a.starts_with("--from=build ")),
        "{last:?}"
    );
    let user = last
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, a)| a.as_str())
        .expect("the final stage sets USER");
    let name = user.split(':').next().unwrap();
    assert!(!["root", "0"].contains(&name), "USER {user}");
    let entry = last.iter().find(|(k, _)| k == "ENTRYPOINT").unwrap();
    assert!(
        entry.1.starts_with("[\""),
        "exec form, so SIGTERM reaches the feeder"
    );
    // A HEALTHCHECK may only use what the image has; it has no HTTP client.
    for (k, a) in last {
        if k == "HEALTHCHECK" {
            assert!(!a.contains("curl") && !a.contains("wget"), "{a}");
        }
    }

    // No secrets: none set in the image, no env or key files copied in.
    let secret = [
        "PASSWORD",
        "SECRET",
        "TOKEN",
        "ACCESS_KEY",
        "PRIVATE_KEY",
        "API_KEY",
    ];
    for (k, a) in &all {
        if k == "ENV" || k == "ARG" || k == "LABEL" {
            let upper = a.to_uppercase();
            assert!(
                !secret.iter().any(|s| upper.contains(s)),
                "{k} {a} looks like a secret"
            );
        }
        if k == "COPY" || k == "ADD" {
            assert!(
                !a.contains(".env") && !a.contains(".pem") && !a.contains("id_rsa"),
                "{k} {a}"
            );
        }
    }
    // The config is mounted in, at the path the image names.
    assert!(all
        .iter()
        .any(|(k, a)| k == "ENV" && a == "CRYPTO_FEEDER_CONFIG=/etc/crypto-feeder/feeder.yaml"));
    let ignore = std::fs::read_to_string(repo().join("deploy/Dockerfile.dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target"), "{ignore}");
}

#[test]
fn dockerfile_parser_reads_continuations_and_comments() {
    let all = instructions("# c\nFROM a:1 AS build\nRUN x \\\n    && y\n\nfrom b:2\nUSER 10:10\n");
    assert_eq!(
        all,
        [
            ("FROM".into(), "a:1 AS build".into()),
            ("RUN".into(), "x  && y".into()),
            ("FROM".into(), "b:2".into()),
            ("USER".into(), "10:10".into()),
        ]
    );
}

// ---- the example config -----------------------------------------------------------------

#[test]
fn the_deploy_example_config_validates() {
    let dir = tempfile::tempdir().unwrap();
    // Its paths, moved under a directory of this test.
    let text = std::fs::read_to_string(repo().join("deploy/feeder.yaml"))
        .unwrap()
        .replace("/var/lib/crypto-feeder", dir.path().to_str().unwrap());
    let config = write(dir.path(), "feeder.yaml", &text);
    let out = run(&["validate", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(": ok (2 exchanges, 2 writers)"),
        "{}",
        stdout(&out)
    );
}

// ---- validate: what it checks without connecting ----------------------------------------

/// A config with one coinbase entry and `writers` as given (YAML lines under `writers:`).
fn config_with(writers: &str, pipeline: &str) -> String {
    format!(
        "exchanges:\n  - name: coinbase\n    symbols: [BTC-USD]\npipeline:\n  candles: [30m]\n{pipeline}writers:\n{writers}"
    )
}

/// Runs `validate` on `text` and returns its status and the error line.
fn validate(dir: &Path, text: &str) -> (Option<i32>, String) {
    let config = write(dir, "feeder.yaml", text);
    let out = run(&["validate", "--config", config.to_str().unwrap()]);
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default()
        .to_owned();
    if !line.is_empty() {
        each_cause_once(&line);
    }
    (out.status.code(), if line.is_empty() { err } else { line })
}

/// The 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn validate_refuses_a_writer_directory_that_cannot_be_created_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "plain-file", "not a directory");
    let below = file.join("trades");

    let text = config_with(
        &format!(
            "  - type: file\n    format: jsonl\n    path: {}\n",
            below.display()
        ),
        "",
    );
    let (code, line) = validate(dir.path(), &text);
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains("writers[0] (file).path: "), "{line}");
    assert!(
        line.contains(&format!("at line {}", line_of(&text, "path: "))),
        "{line}"
    );
    assert!(
        line.contains(&format!("{} is not a directory", file.display())),
        "{line}"
    );

    // The s3 writer's spool directory.
    let text = config_with(
        &format!(
            "  - type: s3\n    bucket: b\n    endpoint: http://127.0.0.1:9/\n    spool_dir: {}\n",
            below.display()
        ),
        "",
    );
    let (code, line) = validate(dir.path(), &text);
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains("writers[0] (s3).spool_dir: "), "{line}");
    assert!(
        line.contains(&format!("at line {}", line_of(&text, "spool_dir"))),
        "{line}"
    );
}

#[test]
fn validate_refuses_a_spill_or_rejected_path_that_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "plain-file", "not a directory");
    let ok = dir.path().join("out");

    let text = config_with(
        &format!(
            "  - type: file\n    path: {}\n    spill:\n      path: {}\n",
            ok.display(),
            file.join("spill").display()
        ),
        "",
    );
    let (code, line) = validate(dir.path(), &text);
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains("writers[0] (file).spill.path: "), "{line}");
    assert!(
        line.contains(&format!("at line {}", line_of(&text, "spill:"))),
        "{line}"
    );

    let text = config_with(
        &format!("  - type: file\n    path: {}\n", ok.display()),
        &format!("  rejected: {}\n", file.join("rejected.jsonl").display()),
    );
    let (code, line) = validate(dir.path(), &text);
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains("pipeline.rejected: "), "{line}");
    assert!(line.contains("is not a directory"), "{line}");
}

#[test]
fn validate_refuses_urls_that_do_not_parse_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file_writer = format!("  - type: file\n    path: {}\n", out.display());
    let cases = [
        (
            "exchanges:\n  - name: coinbase\n    symbols: [BTC-USD]\n    ws_url: not a url\nwriters:\n"
                .to_owned()
                + &file_writer,
            "ws_url",
        ),
        (
            "exchanges:\n  - name: coinbase\n    symbols: [BTC-USD]\n    rest_url: ftp://example.com/\nwriters:\n"
                .to_owned()
                + &file_writer,
            "rest_url",
        ),
        (
            config_with("  - type: postgres\n    url: http://[::1\n", ""),
            "(postgres).url",
        ),
        (
            config_with("  - type: s3\n    bucket: b\n    endpoint: ftp://127.0.0.1/\n", ""),
            "(s3).endpoint",
        ),
    ];
    for (text, key) in cases {
        let (code, line) = validate(dir.path(), &text);
        assert_eq!(code, Some(1), "{key}: {line}");
        assert!(line.contains(key), "{key}: {line}");
        assert!(line.contains("line "), "{key} names no line: {line}");
    }
    assert!(!out.exists(), "validate created a writer directory");
}

/// Without `--online`, `validate` opens no connection: not to the exchanges' URLs, not to a
/// store. Every address in the config is a listener of this test that counts what connects.
#[test]
fn validate_without_online_opens_no_connection() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = dir.path().join("out");
    let text = format!(
        "exchanges:
  - name: coinbase
    symbols: [BTC-USD]
    ws_url: ws://127.0.0.1:{port}/
    rest_url: http://127.0.0.1:{port}/
writers:
  - type: file
    path: {out}
  - type: postgres
    url: postgres://feeder@127.0.0.1:{port}/market
  - type: kafka
    brokers: [127.0.0.1:{port}]
  - type: s3
    bucket: trades
    endpoint: http://127.0.0.1:{port}/
    spool_dir: {out}/spool
",
        out = out.display()
    );
    let (code, line) = validate(dir.path(), &text);
    assert_eq!(code, Some(0), "{line}");
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("validate connected: {other:?}"),
    }
    assert!(!out.exists(), "validate created a writer directory");
}

// ---- a run that never reached its exchange ----------------------------------------------

/// A venue URL whose host does not resolve: the run retries, logs each failure with its
/// cause once, and ends on SIGTERM with status 4 and an error line naming the exchange and
/// why it was not reached.
#[test]
fn a_run_that_never_resolved_its_venue_ends_naming_it_with_the_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "feeder.yaml",
        &format!(
            "exchanges:\n  - name: coinbase\n    symbols: [BTC-USD]\n    ws_url: wss://feeder-test.invalid/\n    rest_url: https://feeder-test.invalid/\nwriters:\n  - type: file\n    path: {}\n",
            dir.path().join("out").display()
        ),
    );
    let log_path = dir.path().join("feeder.log");
    let mut child = bin()
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("CRYPTO_FEEDER_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + WAIT;
    while !log().contains("connect failed") {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no connect failure logged:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit after SIGTERM:\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = log();
    assert_eq!(status.code(), Some(4), "{log}");
    for line in log.lines().filter(|l| l.contains("connect failed")) {
        assert!(line.contains("websocket connection failed"), "{line}");
        each_cause_once(line);
    }
    let end = log
        .lines()
        .find(|l| l.contains("never reached"))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    assert!(end.contains("ERROR"), "{end}");
    assert!(
        end.contains("coinbase (websocket connection failed"),
        "{end}"
    );
    each_cause_once(end);
}

#[test]
fn each_cause_once_catches_a_repeated_cause() {
    each_cause_once("error: connect: IO error: no route: host down");
    let repeated = std::panic::catch_unwind(|| {
        each_cause_once("failed: IO error: lookup failed: lookup failed");
    });
    assert!(repeated.is_err());
}

// ---- docs -------------------------------------------------------------------------------

/// Every key all writers take (read from the config type itself, so a new one is covered)
/// is in the shared-keys tables of WRITERS.md and the README.
#[test]
fn every_shared_writer_key_is_documented() {
    let mut w = feeder_core::config::WriterConfig::new("file");
    w.spill = Some(feeder_core::config::SpillConfig {
        path: "/spill".into(),
        max_bytes: 1 << 30,
    });
    let value = serde_json::to_value(&w).unwrap();
    let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
    assert!(
        keys.len() >= 9 && keys.iter().any(|k| *k == "spill"),
        "{keys:?}"
    );
    let spill_keys: Vec<String> = value["spill"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for (doc, heading) in [
        ("feeder-writers/WRITERS.md", "## Keys every writer takes"),
        ("README.md", "### `writers[]`: keys every writer has"),
    ] {
        let text = std::fs::read_to_string(repo().join(doc)).unwrap();
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| l.trim() != heading)
            .skip(1)
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .collect();
        for key in &keys {
            let row = table
                .iter()
                .find(|l| l.starts_with(&format!("| `{key}` |")))
                .unwrap_or_else(|| panic!("{doc}: no row for `{key}` under {heading:?}"));
            if *key == "spill" {
                for sub in &spill_keys {
                    assert!(
                        row.contains(&format!("`{sub}`")),
                        "{doc}: spill.{sub}: {row}"
                    );
                }
            }
        }
    }
}

/// The workspace's `rust-version` (what the README's Install section and the Docker build
/// image promise) is at least that of every locked dependency of the binary: an older Rust
/// would fail on one of them.
#[test]
fn declared_rust_version_covers_every_dependency_of_the_binary() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo metadata: {}", stderr(&out));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages: std::collections::HashMap<&str, &serde_json::Value> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let nodes: std::collections::HashMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = packages
        .values()
        .find(|p| p["name"] == "feeder-cli")
        .unwrap()["id"]
        .as_str()
        .unwrap();
    // The binary's dependencies: normal and build edges, not dev ones.
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let used = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if used {
                stack.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    let version = |v: &str| -> (u32, u32) {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    };
    let declared = workspace_rust_version();
    let mut newer = Vec::new();
    for id in &seen {
        let p = packages[id];
        if let Some(v) = p["rust_version"].as_str() {
            if version(v) > declared {
                newer.push(format!("{} {} needs {v}", p["name"], p["version"]));
            }
        }
    }
    assert!(
        seen.len() > 100 && newer.is_empty(),
        "rust-version {declared:?} is below: {newer:?}"
    );
}

/// The license files are the ones `license` in Cargo.toml names.
#[test]
fn license_files_match_the_manifest() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("license = \"MIT OR Apache-2.0\""),
        "the license changed: update LICENSE-* and this test"
    );
    let mit = std::fs::read_to_string(repo().join("LICENSE-MIT")).unwrap();
    assert!(mit.starts_with("Copyright (c) the crypto-feeder developers\n"));
    assert!(mit.contains("Permission is hereby granted, free of charge"));
    let apache = std::fs::read_to_string(repo().join("LICENSE-APACHE")).unwrap();
    assert!(apache.trim_start().starts_with("Apache License"));
    assert!(apache.contains("Version 2.0, January 2004"));
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
}
