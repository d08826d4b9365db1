/// etcd's `--grpc-keepalive-min-time`, `--grpc-keepalive-interval` and `--grpc-keepalive-timeout`, with grpc-go's
/// server semantics: a client that pings more often than `minTime` (or at all while it has no call open) gets
/// GOAWAY ENHANCE_YOUR_CALM "too_many_pings" after three such pings; a connection quiet for `interval` is pinged, and
/// closed if nothing arrives within `timeout` more.
public struct KeepaliveSettings: Sendable, Equatable {
    public var minTime: Duration = .seconds(5)
    /// Zero disables the server's pings.
    public var interval: Duration = .seconds(7200)
    /// Zero: a pinged connection is never closed for silence.
    public var timeout: Duration = .seconds(20)
    public init() {}
}

/// Options set on listening sockets before they bind.
public struct SocketOptions: Sendable, Equatable {
    /// SO_REUSEPORT: several processes (or listeners) may bind the same address and port; the kernel spreads
    /// connections among them.
    public var reusePort = false
    /// SO_REUSEADDR: bind while old connections of the address are in TIME_WAIT. Quorum always sets it, as Go's
    /// listeners (and so etcd's) do on Linux whatever the flag says.
    public var reuseAddress = false

    public init() {}
}
