# Tools the packaging tests (feeder-cli/tests/packaging.rs) check the deploy files and the
# generated completions and man page with; sourced by .ci/services. Nothing to start: only
# what is missing is installed.
#
#   systemd-analyze  (systemd)     verify and score deploy/crypto-feeder.service
#   groff, man       (groff-base, man-db)  render the man page
#   zsh, fish                      parse the zsh and fish completion scripts
#
# There is no Debian package of hadolint; the Dockerfile's rules are checked by the test.

deploy_lint_install() {
    local missing=()
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
    command -v groff >/dev/null 2>&1 || missing+=(groff-base)
    command -v man >/dev/null 2>&1 || missing+=(man-db)
    command -v zsh >/dev/null 2>&1 || missing+=(zsh)
    command -v fish >/dev/null 2>&1 || missing+=(fish)
    if [ ${#missing[@]} -eq 0 ]; then
        say "deploy lint tools already installed"
        return 0
    fi
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
deploy_lint_install
