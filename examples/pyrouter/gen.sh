#!/bin/sh
# Regenerates pyrouter_pb/, the committed Python code of every gRPC service
# the plugin serves or calls, from the .proto files the Go side uses:
#
#   core/sdk/base/proto/base.proto        umedge.base.v1 (Base, Host)
#   core/sdk/router/proto/router.proto    umedge.router.v1 (Router)
#   go-plugin's internal/plugin/*.proto   plugin.GRPCController, plugin.GRPCBroker,
#                                         at the go-plugin version go.mod names
#   proto/grpc/health/v1/health.proto     grpc.health.v1 (copied, see the file)
#
# Messages come from protoc (Debian protobuf-compiler), the release of the
# python3-protobuf runtime; the service stubs from python3-grpc-tools.
# Run it from anywhere: sh examples/pyrouter/gen.sh (or make pyproto).
set -eu

PYTHON=${PYTHON:-/usr/bin/python3} # Debian's, where python3-grpc-tools lives
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$here/pyrouter_pb

goplugin=$(cd "$root" && go mod download github.com/hashicorp/go-plugin &&
	go list -m -f '{{.Dir}}' github.com/hashicorp/go-plugin)

gen() { # gen <include dir> <file.proto>
	protoc -I "$1" --python_out="$out" "$2"
	"$PYTHON" -m grpc_tools.protoc -I "$1" --grpc_python_out="$out" "$2"
}

echo "==> regenerating $out"
rm -rf "$out"
mkdir -p "$out"
gen "$root/core/sdk/base/proto" base.proto
gen "$root/core/sdk/router/proto" router.proto
gen "$goplugin/internal/plugin" grpc_controller.proto
gen "$goplugin/internal/plugin" grpc_broker.proto
gen "$here/proto/grpc/health/v1" health.proto
