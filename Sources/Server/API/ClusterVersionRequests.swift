import EtcdProto
import Logging
import Node

// etcd's cluster version (decided by the leader, replicated as ClusterVersionSet) and its Downgrade RPC
// (VALIDATE, ENABLE, CANCEL, replicated as DowngradeInfoSet), with etcd 3.5's checks, order and error strings.

extension EtcdError {
    static let wrongDowngradeVersionFormat = EtcdError(
        .invalidArgument, "etcdserver: wrong downgrade target version format")
    static let invalidDowngradeTargetVersion = EtcdError(
        .invalidArgument, "etcdserver: invalid downgrade target version")
    static let clusterVersionUnavailable = EtcdError(
        .unavailable, "etcdserver: cluster version not found during downgrade")
    static let downgradeInProcess = EtcdError(
        .failedPrecondition, "etcdserver: cluster has a downgrade job in progress")
    static let noInflightDowngrade = EtcdError(.failedPrecondition, "etcdserver: no inflight downgrade job")
    static let unknownMethod = EtcdError(.invalidArgument, "etcdserver: unknown method")
}

extension EtcdHandler {
    /// The cluster version as /version reports it: etcd's "not_decided" until the leader set one.
    var clusterVersionText: String { node.versions.values.clusterVersion ?? "not_decided" }

    public func downgrade(_ r: Etcdserverpb_DowngradeRequest, _ caller: Caller) async throws(EtcdError)
        -> Etcdserverpb_DowngradeResponse
    {
        try authorize(.downgrade, caller)
        switch r.action {
        case .validate:
            _ = try await validateDowngrade(r.version)
            return downgradeResponse()
        case .enable:
            let target = try await validateDowngrade(r.version)
            var info = Etcdserverpb_DowngradeInfo()
            info.enabled = true
            info.targetVersion = target.description
            try await setDowngrade(info)
            return downgradeResponse()
        case .cancel:
            try await node.readBarrier()
            guard node.versions.values.downgrade.enabled else { throw .noInflightDowngrade }
            try await setDowngrade(Etcdserverpb_DowngradeInfo())
            return downgradeResponse()
        case .UNRECOGNIZED:
            throw .unknownMethod
        }
    }

    /// etcd's `downgradeValidate`: the target (Major.Minor or Major.Minor.Patch) must be one minor below the cluster
    /// version, read after the leader's commit index was applied, with no downgrade already enabled.
    private func validateDowngrade(_ text: String) async throws(EtcdError) -> MinorVersion {
        guard let target = MinorVersion(text) else { throw .wrongDowngradeVersionFormat }
        try await node.readBarrier()
        let values = node.versions.values
        guard let current = values.clusterVersion.flatMap(MinorVersion.init) else { throw .clusterVersionUnavailable }
        guard target.major == current.major && target.minor == current.minor - 1 else {
            throw .invalidDowngradeTargetVersion
        }
        if values.downgrade.enabled { throw .downgradeInProcess }
        return target
    }

    private func setDowngrade(_ info: Etcdserverpb_DowngradeInfo) async throws(EtcdError) {
        var request = Quorumpb_RaftRequest()
        request.downgradeInfoSet = info
        _ = try await propose(request)
    }

    private func downgradeResponse() -> Etcdserverpb_DowngradeResponse {
        var response = Etcdserverpb_DowngradeResponse()
        response.header = node.header(revision: node.store.revisions.current)
        response.version = node.versions.values.clusterVersion ?? ""
        return response
    }

    /// One pass of etcd's `monitorVersions` and `monitorDowngrade`, on the leader only: proposes what
    /// `ClusterVersionDecision` says. Returns whether it changed anything.
    @discardableResult
    func decideClusterVersion(logger: Logger) async -> Bool {
        guard node.status.isLeader else { return false }
        let values = node.versions.values
        guard let decision = ClusterVersionDecision.decide(values, members: node.members.all.map(\.id)) else {
            return false
        }
        var request = Quorumpb_RaftRequest()
        switch decision {
        case .setClusterVersion(let version):
            var set = Quorumpb_ClusterVersion()
            set.version = version
            request.clusterVersion = set
            logger.info(
                values.clusterVersion == nil ? "setting up initial cluster version" : "updating cluster version",
                metadata: ["from": "\(values.clusterVersion ?? "")", "to": "\(version)"])
        case .finishDowngrade:
            request.downgradeInfoSet = Etcdserverpb_DowngradeInfo()
            logger.info(
                "the cluster has been downgraded", metadata: ["cluster-version": "\(values.clusterVersion ?? "")"])
        }
        if case .success = await node.propose(request) { return true }
        return false
    }

    /// Runs `decideClusterVersion` every `interval` until cancelled (etcd checks every 4 seconds), and every 100 ms
    /// while no cluster version is decided yet: members' versions arrive as they publish themselves at start, and
    /// etcd too decides at once (on the leader's first commit), so /version and /metrics have it from the start.
    func monitorClusterVersion(every interval: Duration = .seconds(2), logger: Logger) async {
        while !Task.isCancelled {
            await decideClusterVersion(logger: logger)
            let undecided = node.versions.values.clusterVersion == nil
            try? await Task.sleep(for: undecided ? .milliseconds(100) : interval)
        }
    }
}
