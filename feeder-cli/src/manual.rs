//! Shell completions and manual pages, generated from the command line's own definition so
//! that they cannot drift from it.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use clap_complete::Shell;
use clap_mangen::Man;

/// Writes the completion script of `shell` for `cmd`.
pub fn completions(mut cmd: clap::Command, shell: Shell, out: &mut dyn Write) {
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes the manual page of `cmd` (roff, section 1): its own options, then each subcommand
/// with its synopsis and options, then the exit status and the environment.
pub fn man_page(cmd: clap::Command, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let man = Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    page.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand(sub, &mut page)?;
    }
    page.extend_from_slice(EXIT_STATUS.as_bytes());
    page.extend_from_slice(ENVIRONMENT.as_bytes());
    man.render_version_section(&mut page)?;
    out.write_all(&page)?;
    Ok(())
}

/// One subcommand as a subsection of the main page: its usage line, what it does, and its
/// options in clap_mangen's own layout (its `OPTIONS` heading dropped, as the subsection
/// is the heading).
fn subcommand(sub: &clap::Command, page: &mut Vec<u8>) -> anyhow::Result<()> {
    let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
    page.extend_from_slice(format!(".SS \"{}\"\n", roff_text(name)).as_bytes());
    let man = Man::new(sub.clone());
    let mut synopsis = Vec::new();
    man.render_synopsis_section(&mut synopsis)?;
    let mut options = Vec::new();
    man.render_options_section(&mut options)?;
    let mut description = Vec::new();
    man.render_description_section(&mut description)?;
    for part in [synopsis, description, options] {
        let text = String::from_utf8(part).context("clap_mangen wrote text that is not UTF-8")?;
        for line in text.lines() {
            // Each part starts with its own `.SH` heading (the `.ie`/`.el` preamble of the
            // title is not rendered here); a paragraph break stands in for it.
            if line.starts_with(".SH ") {
                page.extend_from_slice(b".PP\n");
            } else {
                page.extend_from_slice(line.as_bytes());
                page.push(b'\n');
            }
        }
    }
    Ok(())
}

/// Escapes text for a roff line: backslashes and hyphens (which roff may otherwise turn
/// into typographic dashes); a leading dot or quote would make a control line.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// The exit statuses, as `main` and `exit_code` return them.
const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success. For \fBrun\fR: a clean run, nothing lost and nothing for the data to record.
.TP
\fB1\fR
An error: a config that cannot be read or is invalid, a writer that cannot be opened, a failed \fBvalidate\fR or \fBsymbols\fR. The message on standard error gives the whole cause chain.
.TP
\fB2\fR
The command line itself is wrong (an unknown option, a missing argument).
.TP
\fB3\fR
\fBrun\fR lost data: a writer dropped or rejected events, failed for good, or a task was abandoned at the shutdown deadline.
.TP
\fB4\fR
\fBrun\fR never reached an exchange: no connection opened, no request answered. An error line names each with its last error.
.TP
\fB5\fR
\fBrun\fR lost nothing, but the data records exceptions: gap events, trades rejected or quarantined, messages not understood, late trades.
.TP
\fB130\fR
A second SIGINT or SIGTERM during shutdown: exited at once, without waiting for the writers.
"#;

/// The environment the command reads.
const ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
\fBCRYPTO_FEEDER_CONFIG\fR
The config file, when \fB\-\-config\fR is not given.
.TP
\fBRUST_LOG\fR
Log filter (for example \fBinfo\fR, \fBfeeder_core=debug\fR); it overrides \fB\-v\fR.
.TP
\fB${NAME}\fR in the config
Any variable the config names is read from the environment (for secrets).
"#;

/// Writes the manual pages of `cmd` and of each subcommand into `dir` (`crypto-feeder.1`,
/// `crypto-feeder-run.1`, ...), creating it, and returns their paths.
pub fn man_pages_to(cmd: clap::Command, dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    let main = dir.join(format!("{}.1", cmd.get_name()));
    let mut page = Vec::new();
    man_page(cmd.clone(), &mut page)?;
    std::fs::write(&main, page).with_context(|| format!("writing {}", main.display()))?;
    written.push(main);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone());
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page)?;
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
