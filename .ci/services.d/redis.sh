# Redis on 127.0.0.1:6379, for the `redis` writer's tests. Sourced by .ci/services (which
# provides say, port_open, wait_port and LOG_DIR).
if port_open 6379; then
    say "redis already running"
else
    if ! command -v redis-server >/dev/null 2>&1; then
        say "installing redis-server"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
    say "starting redis-server on 127.0.0.1:6379"
    setsid nohup redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
        --daemonize no >"$LOG_DIR/redis.log" 2>&1 </dev/null &
fi
wait_port redis 6379 30
