#!/usr/bin/env bash
# MinIO for the demo, the tests and the benchmarks, on 127.0.0.1 only.
#
#   scripts/minio.sh install        build MinIO into GOPATH/bin unless it is there
#                                   (the first build takes ~7 minutes on 2 cores)
#   scripts/minio.sh start [DIR]    start it on a free port with its data in DIR
#                                   (default: a new temp folder) and print, as
#                                   shell lines, the environment that reaches it:
#                                   eval "$(scripts/minio.sh start)"
#   scripts/minio.sh stop DIR       stop the server started with DIR and remove DIR
#   scripts/minio.sh path           print the binary's path
set -euo pipefail

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

minio_path() {
	if command -v minio >/dev/null 2>&1; then command -v minio; return; fi
	local gobin
	gobin=$(go env GOBIN)
	[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
	echo "$gobin/minio"
}

install() {
	local p
	p=$(minio_path)
	if [ -x "$p" ]; then return; fi
	echo "scripts/minio.sh: building MinIO $MINIO_VERSION (about 7 minutes the first time)" >&2
	go install "github.com/minio/minio@$MINIO_VERSION"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
	install
	local dir=${1:-}
	[ -n "$dir" ] || dir=$(mktemp -d /tmp/coffer-minio.XXXXXX)
	mkdir -p "$dir/data"
	local port user pass
	port=$(free_port)
	user=coffer-admin
	pass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)
	# MINIO_IDLE_TIMEOUT: the aws CLI (urllib3) sometimes misreads MinIO's
	# answer to an Expect: 100-continue PUT and then reads until the
	# connection closes; MinIO's default of 30 s made that a 30 s stall (the
	# tests' MinIO sets the same, test/s3_main_test.go).
	MINIO_ROOT_USER=$user MINIO_ROOT_PASSWORD=$pass MINIO_BROWSER=off MINIO_UPDATE=off MINIO_IDLE_TIMEOUT=2s \
		nohup "$(minio_path)" server --quiet --address "127.0.0.1:$port" "$dir/data" >"$dir/minio.log" 2>&1 &
	echo $! >"$dir/minio.pid"
	for _ in $(seq 1 100); do
		if curl -fsS "http://127.0.0.1:$port/minio/health/live" >/dev/null 2>&1; then
			cat <<-EOF
				export MINIO_DIR=$dir
				export AWS_ENDPOINT_URL=http://127.0.0.1:$port
				export AWS_ACCESS_KEY_ID=$user
				export AWS_SECRET_ACCESS_KEY=$pass
				export AWS_REGION=us-east-1
			EOF
			return
		fi
		sleep 0.1
	done
	echo "scripts/minio.sh: MinIO did not start; its log:" >&2
	cat "$dir/minio.log" >&2
	stop "$dir"
	exit 1
}

stop() {
	local dir=${1:?usage: scripts/minio.sh stop DIR}
	if [ -f "$dir/minio.pid" ]; then
		local pid
		pid=$(cat "$dir/minio.pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}

case "${1:-}" in
install) install ;;
start) start "${2:-}" ;;
stop) stop "${2:-}" ;;
path) minio_path ;;
*) echo "usage: scripts/minio.sh install | start [DIR] | stop DIR | path" >&2; exit 2 ;;
esac
