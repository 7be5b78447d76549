#!/usr/bin/env bash
# The quick start's main job: set up, start two simulated devices and the proxy in front of them
# (as twistd daemons in the foreground of this script), then run a client through the proxy
# that prints samples as they arrive.  Everything is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: setting up .venv/ (scripts/setup.sh; a minute or two the first time)"
SKIP_REFERENCE=1 bash scripts/setup.sh
BIN=.venv/bin
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# wait_port LOGFILE REGEX: print the port a daemon logged once it is listening (10 s at most).
wait_port() {
  for _ in $(seq 100); do
    port=$(grep -oE "$2" "$1" 2>/dev/null | grep -oE '[0-9]+$' | head -n1 || true)
    if [ -n "$port" ]; then echo "$port"; return 0; fi
    sleep 0.1
  done
  echo "demo: no listening port in $1:" >&2; cat "$1" >&2; return 1
}

echo "demo: starting two simulated devices (twistd pybrid-device)"
for i in 1 2; do
  $BIN/twistd -n --pidfile= --logfile="$work/device$i.log" pybrid-device \
    --interface 127.0.0.1 --port 0 --mac "00-00-5e-00-53-0$i" &
  pids+=($!)
done
dev1=$(wait_port "$work/device1.log" 'listening on 127\.0\.0\.1:[0-9]+')
dev2=$(wait_port "$work/device2.log" 'listening on 127\.0\.0\.1:[0-9]+')
echo "simulated devices on ports $dev1 and $dev2"

cat > "$work/backends.txt" <<EOT
# Two simulated LUCIDACs stacked into one computer (a LUCIStack), one wire between them.
carrier 127.0.0.1:$dev1 0
carrier 127.0.0.1:$dev2 1
wire 0/0 1/0
EOT
echo "demo: starting the proxy in front of them (twistd pybrid-proxy)"
$BIN/twistd -n --pidfile= --logfile="$work/proxy.log" pybrid-proxy \
  -b "$work/backends.txt" --listen 127.0.0.1 --port 0 &
pids+=($!)
proxy=$(wait_port "$work/proxy.log" 'pybrid-proxy listening on 127\.0\.0\.1:[0-9]+')
echo "pybrid-proxy on port $proxy (log: $work/proxy.log)"

echo "demo: a client run through the proxy (examples/quickstart.py), samples as they arrive"
$BIN/python examples/quickstart.py 127.0.0.1 "$proxy" "$@"
