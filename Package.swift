// swift-tools-version:6.1
// Quorum: an etcd-compatible, Raft-replicated key-value store with self-managed TLS.
//
// Targets depend downward only:
//   Raft (pure consensus) · Storage (WAL, snapshots, SQLite) · EtcdProto (wire messages)
//   MVCC (revisioned key space, watches, leases) · Auth (etcd's users, roles, permissions, tokens; pure)
//   Node (the replicated state machine; no I/O framework)
//   Bolt (bbolt's file format) · EtcdSnapshot (etcd's backend schema and snapshot files, over Bolt)
//   Batching (a lock-protected batch of work for one consumer; shared by Node and RPCTransport)
//   RPCTransport (the client port's transport: frame-level gRPC over HTTP/2, HTTP/1.1 and HTTP-over-HTTP/2, listening
//   sockets, protocol sniffing, keepalive; knows nothing of etcd: no Node, MVCC, Auth or PKI)
//   GRPCProxy (`quorum grpc-proxy start`: etcd's L7 proxy; over RPCTransport, EtcdAPI clients and PKI, no Node/MVCC)
//   PKI (CAs, issuance, renewal) · Server (the etcd services, gateway, peers, TLS; over RPCTransport) · executables on top.
//   Backup (scheduled etcd-format backups to a directory or S3; its own small HTTP/1.1 S3 client on NIO) stands apart:
//   it receives the snapshot producer as a closure, so it depends on no other Quorum target.
// Nothing below Server imports NIO or gRPC except RPCTransport and Backup, which know nothing of etcd. The simulator
// (Simulation, over Raft, Storage, MVCC and Node) drives the Raft core seed by seed; runs the real write-ahead log on a
// simulated disk (SimFileSystem: lost, reordered and torn unsynced writes, undone renames, failing fsync); and runs
// real members (MemberNode: the Raft loop, log, SQLite key space, apply loop, watches) on one scheduler in virtual
// time, on a simulated network, crashed and restarted, with linearizability, lease and watch checks. Members write
// real files (a crash keeps what they wrote, as kill -9 does) or, with `--simulated-disks`, their log and SQLite
// (through Storage's VFS) run on SimFileSystem: crashes are power cuts, writes and fsyncs fail or stall. Power cuts
// of real processes are exercised by the chaos harness (lossyfs).
import PackageDescription

let package = Package(
    name: "Quorum",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "quorum", targets: ["quorum"]),
        .executable(name: "quorumctl", targets: ["quorumctl"]),
        .executable(name: "quorum-sim", targets: ["quorum-sim"]),
        .executable(name: "quorum-bench", targets: ["quorum-bench"]),
        .executable(name: "quorum-chaos", targets: ["quorum-chaos"]),
    ],
    dependencies: [
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CXCrypt", path: "Sources/CXCrypt", providers: [.apt(["libcrypt-dev"])]),
        // The system's zlib, for gRPC's gzip message encoding (RPCTransport).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        // glibc's malloc.h, for malloc_trim and mallopt (Node's Allocator).
        .systemLibrary(name: "CMalloc", path: "Sources/CMalloc"),
        .target(name: "Raft"),
        .target(name: "Batching"),
        .target(name: "GoSyntax"),
        .target(name: "Storage", dependencies: ["CSQLite"]),
        .target(name: "EtcdProto", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .target(name: "Bolt"),
        .target(
            name: "EtcdSnapshot",
            dependencies: [
                "Bolt", "EtcdProto", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .target(
            name: "MVCC",
            dependencies: ["Storage", "EtcdProto", .product(name: "Collections", package: "swift-collections")]
        ),
        .target(
            name: "Auth",
            dependencies: [
                "EtcdProto", "CXCrypt", "GoSyntax", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        .target(
            name: "Node",
            dependencies: [
                "Raft", "Storage", "MVCC", "EtcdProto", "EtcdSnapshot", "Auth", "Batching", "CMalloc", "GoSyntax",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "PKI",
            dependencies: [
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "EtcdAPI",
            dependencies: [
                "EtcdProto",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ]
        ),
        .target(
            name: "RPCTransport",
            dependencies: [
                "Batching", "CZlib",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .target(
            name: "Server",
            dependencies: [
                "Node", "PKI", "EtcdAPI", "EtcdProto", "MVCC", "Storage", "Raft", "Auth", "Backup", "RPCTransport",
                "ReloadingTLS", "GoSyntax",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .target(
            // TLS identities that follow their files (renewals, CA rotation, CRLs) without a restart, and the
            // verification that explains every refusal: shared by members, the gRPC proxy and quorumctl.
            name: "ReloadingTLS",
            dependencies: [
                "PKI", "RPCTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "GRPCProxy",
            dependencies: [
                "EtcdAPI", "EtcdProto", "RPCTransport", "PKI", "ReloadingTLS",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Collections", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "Simulation",
            dependencies: [
                "Raft", "Storage", "Node", "MVCC", "EtcdProto", .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "Backup",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "quorum",
            dependencies: [
                "Server", "Node", "GRPCProxy",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "quorumctl",
            dependencies: [
                "Server", "PKI", "EtcdAPI", "Node", "EtcdSnapshot", "EtcdProto", "Backup", "ReloadingTLS",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "quorum-sim",
            dependencies: ["Simulation", "Node", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "quorum-bench",
            dependencies: [
                "EtcdAPI", "EtcdProto",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .target(
            name: "Chaos",
            dependencies: [
                "EtcdAPI", "EtcdProto", "Raft", "Simulation",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ]
        ),
        .executableTarget(
            name: "quorum-chaos",
            dependencies: ["Chaos", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // What the test targets share: seeded randomness, temporary directories, child processes, free ports and
        // the trait that runs blocking suites off the cooperative pool.
        .target(name: "TestSupport", path: "Tests/Support"),
        .testTarget(name: "ChaosTests", dependencies: ["Chaos", "Simulation"]),
        .testTarget(name: "RaftTests", dependencies: ["Raft"]),
        .testTarget(name: "GoSyntaxTests", dependencies: ["GoSyntax"]),
        .testTarget(
            name: "BackupTests",
            dependencies: [
                "TestSupport",
                "Backup", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "SimulationTests",
            dependencies: ["TestSupport", "Simulation", "Raft", "Storage", "Node", "MVCC", "EtcdProto"]),
        .testTarget(name: "GRPCProxyTests", dependencies: ["GRPCProxy", "EtcdProto"]),
        .testTarget(name: "StorageTests", dependencies: ["TestSupport", "Storage"]),
        .testTarget(name: "BoltTests", dependencies: ["TestSupport", "Bolt"]),
        .testTarget(name: "EtcdSnapshotTests", dependencies: ["TestSupport", "EtcdSnapshot", "Bolt", "EtcdProto"]),
        .testTarget(name: "MVCCTests", dependencies: ["TestSupport", "MVCC", "Storage", "EtcdProto"]),
        .testTarget(name: "AuthTests", dependencies: ["TestSupport", "Auth", "EtcdProto"]),
        .testTarget(name: "NodeTests", dependencies: ["TestSupport", "Node", "MVCC", "Storage", "Raft", "EtcdProto"]),
        .testTarget(
            name: "PKITests",
            dependencies: [
                "TestSupport",
                "PKI", .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "TestSupport",
                "EtcdAPI", "EtcdProto",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ]
        ),
        .testTarget(
            name: "TLSTests",
            dependencies: [
                "TestSupport",
                "Server", "RPCTransport", "PKI", "ReloadingTLS",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        .testTarget(
            name: "RPCTransportTests",
            dependencies: [
                "RPCTransport", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        // Fuzzing (docs/FUZZING.md). What each target does with its bytes lives in FuzzHarness, a library, so that
        // FuzzTests replays the committed corpora and every regression input in the ordinary suite; quorum-fuzz is
        // the libFuzzer driver, built by scripts/fuzz.sh with -sanitize=fuzzer,address into its own scratch path.
        .target(
            name: "FuzzHarness",
            dependencies: [
                "Server", "RPCTransport", "Node", "EtcdProto", "Storage", "Raft", "Bolt", "EtcdSnapshot", "PKI", "Auth",
                "Backup", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .executableTarget(name: "quorum-fuzz", dependencies: ["FuzzHarness"]),
        .testTarget(
            name: "FuzzTests", dependencies: ["FuzzHarness"], exclude: ["Corpus", "Regressions", "Dictionaries"]),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "TestSupport", "Server", "RPCTransport", "Node", "EtcdProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            ]
        ),
    ]
)
