# Shared by the bench scripts (sourced, not run): package checks and the nginx upstream.

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
