# NATS with JetStream on 127.0.0.1:4222, for the `nats` writer's tests. Sourced by
# .ci/services (which provides say, port_open, wait_port and LOG_DIR).
if port_open 4222; then
    say "nats already running"
else
    if ! command -v nats-server >/dev/null 2>&1; then
        say "installing nats-server"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    fi
    say "starting nats-server with JetStream on 127.0.0.1:4222"
    mkdir -p /tmp/crypto-feeder-nats
    setsid nohup nats-server -js -a 127.0.0.1 -p 4222 -sd /tmp/crypto-feeder-nats \
        >"$LOG_DIR/nats.log" 2>&1 </dev/null &
fi
wait_port nats 4222 30
