import Server

/// etcd's YAML configuration file (`--config-file`), as a member reads it at start-up: the bytes are the file,
/// loaded by `EtcdFlags.load(configFile:)` and resolved into a server configuration with the checks `quorum` makes
/// before starting (URLs, clusters, TLS and auth options, log settings). DNS discovery answers from a fixed
/// resolver, so that no input reaches the network.
enum ConfigTarget {
    struct FixedSRV: SRVResolver {
        func lookupSRV(_ name: String) throws -> [SRVRecord] {
            [SRVRecord(port: 2380, target: "m1.example.com."), SRVRecord(port: 2480, target: "m2.example.com.")]
        }

        func resolve(host: String, port: Int) throws -> [String] { ["127.0.0.1:\(port)"] }
    }

    static func run(_ bytes: [UInt8]) {
        let path = Scratch.path("quorum.conf.yml")
        Scratch.write(bytes, to: path)
        guard let flags = try? EtcdFlags.load(configFile: path) else { return }
        _ = flags.ignoredFlagNotices()
        _ = try? flags.logSettings()
        _ = try? flags.logLevel()
        _ = try? flags.resolve(srvResolver: FixedSRV())
    }
}
