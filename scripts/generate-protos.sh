#!/usr/bin/env bash
# Regenerates the committed Swift code for Protos/*.proto.
# Needs Debian's protobuf-compiler (protoc) and builds the two Swift plugins from the package's own dependencies.
# The SwiftPM build plugin is deliberately not used: it compiles protoc from C++ on every clean build.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v protoc >/dev/null || { sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo; $sudo apt-get install -y protobuf-compiler; }

swift build --product protoc-gen-swift >/dev/null
swift build --product protoc-gen-grpc-swift-2 >/dev/null
bin=$(swift build --show-bin-path)

messages=(mvccpb/kv.proto authpb/auth.proto leasepb/lease.proto etcdserverpb/rpc.proto v3electionpb/v3election.proto
          v3lockpb/v3lock.proto quorumpb/internal.proto quorumpb/peer.proto)
services=(etcdserverpb/rpc.proto v3electionpb/v3election.proto v3lockpb/v3lock.proto quorumpb/peer.proto)

rm -f Sources/EtcdProto/*.pb.swift Sources/EtcdAPI/*.grpc.swift
protoc -I Protos --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
    --swift_out=Sources/EtcdProto --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
    "${messages[@]}"
protoc -I Protos --plugin=protoc-gen-grpc-swift="$bin/protoc-gen-grpc-swift-2" \
    --grpc-swift_out=Sources/EtcdAPI \
    --grpc-swift_opt=Visibility=Public,Client=true,Server=true,FileNaming=PathToUnderscores,UseAccessLevelOnImports=false \
    "${services[@]}"
# The service code lives in its own module (EtcdAPI) beside the messages (EtcdProto).
sed -i 's/^import GRPCProtobuf$/import GRPCProtobuf\nimport EtcdProto/' Sources/EtcdAPI/*.grpc.swift
echo "generated: $(ls Sources/EtcdProto/*.pb.swift Sources/EtcdAPI/*.grpc.swift | wc -l) files"
