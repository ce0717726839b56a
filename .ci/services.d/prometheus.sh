# Prometheus, for the metrics test (feeder-cli/tests/observe_prometheus.rs). Only installed
# here: the test runs its own server on a free loopback port with a config of its own that
# scrapes the feeder every second, so no server is started and no port waited for.
# Sourced by .ci/services (uses say).
if ! command -v prometheus >/dev/null 2>&1; then
    say "installing prometheus"
    # No service start from the package's scripts: there is no init system to run it, and
    # the test runs the server itself.
    own_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus >/dev/null
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
say "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') installed"
