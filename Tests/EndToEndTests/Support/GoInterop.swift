import Foundation
import TestSupport

/// Builds the Go program in `Tests/Interop/<name>` (GOPATH mode, etcd's clientv3 from Debian's
/// golang-etcd-server-dev only) into a cache keyed by its source's hash, and returns the binary's path.
func buildInteropProgram(_ name: String) throws -> String {
    let source = Paths.packageRoot + "/Tests/Interop/" + name
    let text = try String(contentsOfFile: source + "/main.go", encoding: .utf8)
    var hash: UInt64 = 14_695_981_039_346_656_037
    for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211 }
    let binary = NSTemporaryDirectory() + "quorum-\(name)-\(String(hash, radix: 16))"
    if FileManager.default.isExecutableFile(atPath: binary) { return binary }
    guard Paths.tool("go") != nil,
        FileManager.default.fileExists(atPath: "/usr/share/gocode/src/go.etcd.io/etcd/clientv3")
    else {
        throw TestFailure(
            "Go and etcd's Go sources are needed: run scripts/test.sh (golang-go, golang-etcd-server-dev)")
    }
    let gopath = NSTemporaryDirectory() + "quorum-\(name)-gopath"
    try FileManager.default.createDirectory(atPath: gopath + "/src", withIntermediateDirectories: true)
    let built = try run(
        "/usr/bin/env",
        ["sh", "-c", "cd '\(source)' && go build -o '\(binary).tmp' . && mv '\(binary).tmp' '\(binary)'"],
        environment: [
            "GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0", "GOPATH": gopath + ":/usr/share/gocode",
            "GOCACHE": NSTemporaryDirectory() + "quorum-\(name)-gocache",
        ], timeout: 600)
    guard built.ok else { throw TestFailure("building \(name) failed: \(built.stderr)") }
    return binary
}
