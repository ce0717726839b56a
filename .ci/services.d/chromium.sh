# Headless Chromium and its driver, for the status page test, and tmux, for the live view
# test (feeder-cli/tests/observe_*.rs). Programs the tests start themselves: nothing to run
# here. Sourced by .ci/services (uses say).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
say "chromium, chromium-driver and tmux installed"
