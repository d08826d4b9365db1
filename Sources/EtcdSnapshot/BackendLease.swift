import EtcdProto

/// A lease as the backend keeps it. Keys point to it through `Mvccpb_KeyValue.lease`; the expiry itself is not
/// stored — a member that loads the lease restarts its clock from `remainingTTL` when set, else from `ttl`.
public struct BackendLease: Sendable, Hashable {
    public var id: Int64
    /// The granted time to live, in seconds.
    public var ttl: Int64
    /// Seconds left at the last checkpoint (etcd's lease checkpointing); 0 when never checkpointed.
    public var remainingTTL: Int64

    public init(id: Int64, ttl: Int64, remainingTTL: Int64 = 0) {
        self.id = id
        self.ttl = ttl
        self.remainingTTL = remainingTTL
    }

    /// The bucket key: the ID as 8 big-endian bytes.
    var keyBytes: [UInt8] { [UInt8](bigEndian: UInt64(bitPattern: id)) }

    var message: Leasepb_Lease {
        var lease = Leasepb_Lease()
        lease.id = id
        lease.ttl = ttl
        lease.remainingTtl = remainingTTL
        return lease
    }

    init(_ message: Leasepb_Lease) {
        self.init(id: message.id, ttl: message.ttl, remainingTTL: message.remainingTtl)
    }
}
