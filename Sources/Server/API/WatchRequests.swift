import EtcdProto
import MVCC

// What a Watch request means in etcd's terms, shared by the gRPC Watch call (`EtcdFastRoutes`) and the JSON
// gateway's `/v3/watch`, so the two answer alike.

extension WatchRequestSpec {
    /// The watcher a create request asks for. With `fragment`, responses are split from the size etcd splits
    /// them at: the member's --max-request-bytes plus the 512 KiB etcd allows for gRPC's overhead.
    init(_ create: Etcdserverpb_WatchCreateRequest, maxRequestBytes: Int) {
        self.init(
            range: KeyRange(key: create.key, rangeEnd: create.rangeEnd), startRevision: create.startRevision,
            prevKV: create.prevKv, filterPut: create.filters.contains(.noput),
            filterDelete: create.filters.contains(.nodelete), progressNotify: create.progressNotify,
            requestedID: create.watchID, fragmentLimit: create.fragment ? maxRequestBytes + 512 * 1024 : nil)
    }
}

extension EtcdHandler {
    /// etcd's answer to a watch the caller may not create: created and canceled at once, watch id -1.
    func refuseWatch(reason: String, on stream: WatchStream) {
        var response = Etcdserverpb_WatchResponse()
        response.header = node.header(revision: node.store.revisions.current)
        response.watchID = -1
        response.created = true
        response.canceled = true
        response.cancelReason = reason
        stream.send(response)
    }

    /// Cancels one of the stream's watchers; as etcd, only a watcher that existed gets a canceled response.
    func cancelWatch(_ watchID: Int64, on stream: WatchStream) {
        guard node.hub.cancel(watchID: watchID, on: stream) else { return }
        var response = Etcdserverpb_WatchResponse()
        response.header = node.header(revision: node.store.revisions.current)
        response.watchID = watchID
        response.canceled = true
        stream.send(response)
    }
}
