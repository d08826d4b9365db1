/// The fuzz targets: each takes arbitrary bytes as they could arrive from the network or be found on disk, and
/// hands them to the member's own parsing code. A crash (trap, precondition, sanitizer report) is a bug; an input
/// that is refused with an error is the expected outcome for nearly every input.
///
/// The same functions run under libFuzzer (`quorum-fuzz`, built by scripts/fuzz.sh) and in the ordinary test
/// suite (`FuzzTests`, which replays the committed corpora and regression inputs).
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// gRPC on the client port: HTTP/2 frames, gRPC messages, every etcd request decoded and checked.
    case grpc
    /// HTTP/1.1 on the client port: request parsing, the router and the JSON gateway's request decoding.
    case http
    /// Peer messages: Raft batches, snapshot chunks, lease renewals, and the Raft message codec.
    case peer
    /// Write-ahead log recovery from a segment file.
    case wal
    /// etcd snapshot files and the bbolt reader.
    case snapshot
    /// PEM certificates, keys, trust bundles and CRLs.
    case pki
    /// The YAML configuration file.
    case config
    /// Auth tokens from clients (simple and JWT) and `--auth-token` values.
    case auth
    /// Peer messages stepped into a real Raft member, its Readies worked through as the member does.
    case raft
    /// Answers from an S3 endpoint to a member's backups, and backup manifests read from a bucket.
    case s3

    public func run(_ bytes: [UInt8]) {
        switch self {
        case .grpc: GRPCTarget.run(bytes)
        case .http: HTTPTarget.run(bytes)
        case .peer: PeerTarget.run(bytes)
        case .wal: WALTarget.run(bytes)
        case .snapshot: SnapshotTarget.run(bytes)
        case .pki: PKITarget.run(bytes)
        case .config: ConfigTarget.run(bytes)
        case .auth: AuthTarget.run(bytes)
        case .raft: RaftTarget.run(bytes)
        case .s3: S3Target.run(bytes)
        }
    }
}

/// The auth target's seeds (`quorum-fuzz seeds-auth OUTDIR`).
public func writeAuthSeeds(to directory: String) throws { try AuthTarget.writeSeeds(to: directory) }
