# Shared by the bench scripts (sourced, not run): package checks, the scratch directory and
# the processes started, the release build, waiting for a server, and the nginx configs.

# need COMMAND PACKAGE: installs the Debian package when the command is missing (as root),
# otherwise says what to install and exits.
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
      echo "missing $1: apt-get install $2" >&2
      exit 1
    fi
  fi
}

# upstream_conf DIR PORT: writes DIR/nginx.conf for the benches' upstream, nginx answering a
# small JSON body from memory on 127.0.0.1:PORT, one worker so it is the same for every run,
# its own access log off.
upstream_conf() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir; proxy_temp_path $dir;
  fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port;
    location / { default_type application/json; return 200 '{"id":42,"name":"item","ok":true}'; }
  }
}
CONF
}

# proxy_conf DIR PORT UPSTREAM_PORT: writes DIR/nginx.conf for nginx as the reverse proxy the
# benches compare with: one worker per core, a keepalive pool to the upstream, a JSON access
# log buffered (64 KiB, flushed every second), on 127.0.0.1:PORT.
proxy_conf() {
  local dir=$1 port=$2 upstream=$3
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<CONF
worker_processes $(nproc);
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $dir; proxy_temp_path $dir;
  fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
  keepalive_requests 1000000;
  log_format json escape=json '{"time":"\$time_iso8601","remote_addr":"\$remote_addr",'
    '"request_id":"\$request_id","method":"\$request_method","host":"\$host","uri":"\$request_uri",'
    '"status":\$status,"bytes_in":\$request_length,"bytes_out":\$bytes_sent,'
    '"duration":\$request_time,"upstream":"\$upstream_addr","user_agent":"\$http_user_agent"}';
  access_log $dir/access.json json buffer=64k flush=1s;
  upstream api { server 127.0.0.1:$upstream; keepalive 128; }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Request-Id \$request_id;
    }
  }
}
CONF
}

# start_work NAME: a scratch directory in $work; on exit every pid in $pids is killed and the
# directory removed (kept, and its path printed, when KEEP is set).
start_work() {
  work="$(mktemp -d "/tmp/$1.XXXXXX")"
  pids=()
  trap cleanup EXIT
}
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}

# build_apiwatch: a release build of this checkout, its path in $APIWATCH; an APIWATCH set
# beforehand (a binary built elsewhere) is used as it is.
build_apiwatch() {
  if [ -n "${APIWATCH:-}" ]; then
    return
  fi
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
  cargo build --release -q -p apiwatch
  APIWATCH="$CARGO_TARGET_DIR/release/apiwatch"
}

# wait_http PORT PATH: waits up to 10 s for http://127.0.0.1:PORT/PATH to answer 2xx; exits
# the script if it does not.
wait_http() {
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$1$2" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2
  exit 1
}

# start_apiwatch [EXTRA_TOML]: starts "$APIWATCH" serve in front of $UPSTREAM_PORT on
# $APIWATCH_PORT (admin $ADMIN_PORT), journaling to $work/apiwatch-data with fsync every
# 100 ms, its output in $work/apiwatch.{out,err}; its pid in $apiwatch_pid. The load
# generators come from 127.0.0.1 at tens of thousands of requests a second, which the flood
# rule would throttle: the allowlist lets every request through to the upstream (detection
# still sees them all, and the decision look-up still runs on every request). EXTRA_TOML is
# appended to the configuration.
start_apiwatch() {
  printf 'version = 1\n[respond]\nallowlist = ["127.0.0.1"]\n%s\n' "${1:-}" >"$work/apiwatch.toml"
  "$APIWATCH" serve --config "$work/apiwatch.toml" --upstream "http://127.0.0.1:$UPSTREAM_PORT" \
    --listen "127.0.0.1:$APIWATCH_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
    --data "$work/apiwatch-data" --fsync 100ms --log-format json \
    >"$work/apiwatch.out" 2>"$work/apiwatch.err" &
  apiwatch_pid=$!
  pids+=("$apiwatch_pid")
}

# admin_metrics ADMIN_PORT: apiwatch's /metrics, with the admin token that its first start
# printed on stderr ($work/apiwatch.err); everything on the admin port but health needs one.
admin_metrics() {
  local token
  token=$(grep -o 'aw_[A-Za-z0-9_-]*' "$work/apiwatch.err" | head -n 1)
  [ -n "$token" ] || { echo "no admin token in $work/apiwatch.err" >&2; return 1; }
  curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$1/metrics"
}
