import Foundation
import TestSupport
import Testing

/// Dashboards and alerts written for etcd (its Grafana dashboard, the etcd-mixin that kube-prometheus ships)
/// query metric families by name, type and labels. The same etcdctl session runs against a 3-member etcd and a
/// 3-member Quorum cluster, and every family real etcd exports must exist in Quorum with etcd's type and label
/// names, except the families listed in `notExported` with the reason.
@Suite(.ownThread) struct MetricsCompatibilityTests {
    /// Families of etcd's that Quorum does not export, and why.
    static let notExported: [(prefix: String, reason: String)] = [
        ("go_", "the Go runtime's own statistics; Quorum is not a Go program"),
        ("promhttp_", "Go's Prometheus HTTP handler counting its own scrapes"),
        ("etcd_server_go_version", "the Go toolchain that built etcd"),
        ("etcd_debugging_store_", "etcd 2's in-memory store behind the v2 API, which Quorum does not serve"),
        ("etcd_grpc_proxy_", "the gRPC proxy's metrics, registered in every etcd process because etcd links the proxy"),
        ("etcd_debugging_disk_backend_commit_rebalance", "a phase of bbolt's commit; Quorum's backend is SQLite"),
        ("etcd_debugging_disk_backend_commit_spill", "a phase of bbolt's commit; Quorum's backend is SQLite"),
        ("etcd_debugging_disk_backend_commit_write", "a phase of bbolt's commit; Quorum's backend is SQLite"),
        ("etcd_debugging_snap_save_marshalling", "marshalling etcd 2's store into a snapshot"),
        ("etcd_network_snapshot_", "not exported yet"),
        ("etcd_network_disconnected_peers_total", "not exported yet"),
    ]

    /// What the etcd-mixin's alerts and etcd's Grafana dashboard query (Debian's etcd-server ships both under
    /// /usr/share/doc/etcd-server), none of which may be excused. `grpc_server_handling_seconds` needs
    /// `--metrics extensive`, with etcd as with Quorum.
    static let dashboardAndAlerts = [
        "etcd_server_has_leader", "etcd_server_leader_changes_seen_total", "etcd_server_proposals_failed_total",
        "etcd_server_proposals_pending", "etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total",
        "grpc_server_started_total", "grpc_server_handled_total", "grpc_server_handling_seconds",
        "etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total",
        "etcd_network_peer_received_bytes_total", "etcd_network_peer_sent_bytes_total",
        "etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds",
        "etcd_mvcc_db_total_size_in_bytes", "etcd_debugging_mvcc_db_total_size_in_bytes",
        "process_resident_memory_bytes",
    ]

    /// One metric family as scraped: its type and the label names its samples carry (`le` aside).
    struct Family: Equatable, CustomStringConvertible {
        var type: String
        var labels: Set<String> = []
        var description: String { "\(type){\(labels.sorted().joined(separator: ","))}" }
    }

    /// Every sample's value summed by metric name (labels aside), across the scraped members.
    static func sums(_ text: String, into totals: inout [String: Double]) {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            guard let value = line.split(separator: " ").last.flatMap({ Double($0) }) else { continue }
            totals[name, default: 0] += value
        }
    }

    /// Parses Prometheus' text exposition format into families.
    static func families(_ text: String) -> [String: Family] {
        var families: [String: Family] = [:]
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                if parts.count >= 4 {
                    families[String(parts[2]), default: Family(type: String(parts[3]))].type = String(parts[3])
                }
                continue
            }
            if line.hasPrefix("#") { continue }
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            var family = name
            if families[family] == nil {
                for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
                    let base = String(name.dropLast(suffix.count))
                    if families[base] != nil { family = base }
                }
            }
            guard families[family] != nil, let open = line.firstIndex(of: "{"), let close = line.firstIndex(of: "}")
            else { continue }
            for pair in line[line.index(after: open)..<close].split(separator: ",") {
                let label = String(pair.prefix { $0 != "=" })
                if label != "le" && !label.isEmpty { families[family]?.labels.insert(label) }
            }
        }
        return families
    }

    /// The same traffic on both clusters: writes, reads, a watch, a lease's life, compaction, defragmentation,
    /// hashes, a snapshot and health checks, through every member.
    static func exercise(_ endpoints: [String], scratch: TemporaryDirectory) async throws -> (
        families: [String: Family], totals: [String: Double]
    ) {
        let all = endpoints.joined(separator: ",")
        // Open through the scrape: it receives the session's writes from the first revision on.
        let watch = try etcdctlInBackground(endpoints[0], ["watch", "k", "--prefix", "--rev=1"])
        defer { watch.stop() }
        for i in 0..<5 { _ = try etcdctl(endpoints[i % endpoints.count], ["put", "k\(i)", "v\(i)"]) }
        for endpoint in endpoints {
            _ = try etcdctl(endpoint, ["get", "k", "--prefix"])
            _ = try etcdctl(endpoint, ["get", "k0", "--consistency=s"])
        }
        _ = try etcdctl(endpoints[0], ["txn"], input: "value(\"k0\") = \"v0\"\n\nput k0 w\n\nput k0 x\n\n")
        _ = try etcdctl(endpoints[1], ["del", "k1"])
        try watch.waitFor { $0.contains("DELETE") }
        let granted = try etcdctl(endpoints[0], ["lease", "grant", "100"]).stdout
        if let id = granted.split(separator: " ").dropFirst().first {
            _ = try etcdctl(endpoints[1], ["lease", "keep-alive", "--once", String(id)])
            _ = try etcdctl(endpoints[2], ["lease", "timetolive", String(id)])
            _ = try etcdctl(endpoints[0], ["lease", "revoke", String(id)])
        }
        // Revision 7 is the transaction's, which superseded k0's first version and its own first put of k0: the
        // compaction has rows to remove.
        _ = try etcdctl(endpoints[0], ["compact", "7"])
        _ = try etcdctl(all, ["endpoint", "hashkv"])
        _ = try etcdctl(all, ["endpoint", "status"])
        _ = try etcdctl(endpoints[2], ["defrag"])
        _ = try etcdctl(endpoints[0], ["member", "list"])
        _ = try etcdctl(endpoints[0], ["snapshot", "save", scratch.file("snapshot.db")])
        var merged: [String: Family] = [:]
        var totals: [String: Double] = [:]
        for endpoint in endpoints {
            _ = try await http(endpoint + "/health")
            let (status, text) = try await http(endpoint + "/metrics")
            #expect(status == 200)
            for (name, family) in families(text) {
                merged[name, default: Family(type: family.type)].labels.formUnion(family.labels)
            }
            sums(text, into: &totals)
        }
        return (merged, totals)
    }

    static func excuse(_ name: String) -> String? {
        notExported.first { name.hasPrefix($0.prefix) }?.reason
    }

    @Test(arguments: RealEtcd.Release.allCases)
    func everyFamilyEtcdExportsExistsWithItsTypeAndLabels(release: RealEtcd.Release) async throws {
        let scratch = TemporaryDirectory()
        let ports = (0..<3).map { _ in (client: freePort(), peer: freePort()) }
        let etcd = try RealEtcd.cluster(
            release, names: ["e1", "e2", "e3"], ports: ports, in: scratch.path, extraArguments: ["--metrics=extensive"])
        defer { etcd.forEach { $0.stop() } }
        let reference = try await Self.exercise(etcd.map(\.endpoint), scratch: scratch).families

        // Snapshots every 10 entries, so the session's own traffic saves some (etcd's default is 100,000).
        let cluster = QuorumCluster(
            size: 3, scratch: scratch, extraArguments: ["--metrics=extensive", "--snapshot-count", "10"])
        try cluster.start()
        _ = try cluster.waitForLeader()
        let (quorum, totals) = try await Self.exercise(cluster.members.map(\.endpoint), scratch: scratch)

        var missing: [String] = []
        var different: [String] = []
        var excused: [String] = []
        for (name, family) in reference.sorted(by: { $0.key < $1.key }) {
            guard let ours = quorum[name] else {
                if let reason = Self.excuse(name), !Self.dashboardAndAlerts.contains(name) {
                    excused.append("\(name): \(reason)")
                } else {
                    missing.append("\(name) \(family)")
                }
                continue
            }
            if ours.type != family.type || (!family.labels.isEmpty && ours.labels != family.labels) {
                different.append("\(name): \(release) \(family), Quorum \(ours)")
            }
        }
        let exported = reference.keys.filter { quorum[$0] != nil }.count
        let byReason = Dictionary(grouping: excused) { String($0.split(separator: ": ", maxSplits: 1).last ?? "") }
        print(
            "\(release): \(reference.count) families, \(exported) exported by Quorum, \(excused.count) excused:\n  "
                + byReason.sorted { $0.key < $1.key }.map { reason, names in
                    "\(reason): \(names.map { $0.split(separator: ":")[0] }.joined(separator: ", "))"
                }.joined(separator: "\n  "))
        #expect(missing.isEmpty, "families \(release) exports that Quorum does not: \(missing)")
        #expect(different.isEmpty, "families whose type or labels differ: \(different)")
        for name in Self.dashboardAndAlerts {
            #expect(quorum[name] != nil, "\(name), used by etcd's dashboard or alerts, is missing")
        }
        // The numbers mean what they say: the session's own traffic shows in them.
        for name in [
            "grpc_server_started_total", "grpc_server_msg_received_total", "grpc_server_msg_sent_total",
            "grpc_server_handling_seconds_count", "etcd_network_client_grpc_received_bytes_total",
            "etcd_network_client_grpc_sent_bytes_total", "etcd_server_health_success",
            "etcd_debugging_lease_renewed_total", "etcd_debugging_lease_granted_total",
            "etcd_debugging_lease_revoked_total", "etcd_mvcc_hash_rev_duration_seconds_count",
            "etcd_disk_backend_defrag_duration_seconds_count", "etcd_disk_backend_snapshot_duration_seconds_count",
            "etcd_server_apply_duration_seconds_count", "etcd_disk_wal_write_bytes_total",
            "etcd_network_peer_sent_bytes_total", "etcd_network_active_peers", "process_cpu_seconds_total",
            "os_fd_used", "etcd_server_client_requests_total", "etcd_debugging_lease_ttl_total_count",
            "etcd_debugging_mvcc_total_put_size_in_bytes", "etcd_debugging_mvcc_watch_stream_total",
            "etcd_debugging_mvcc_events_total",
            "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds_count",
            "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds_count",
            "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count",
            "etcd_debugging_mvcc_db_compaction_keys_total", "etcd_debugging_mvcc_db_compaction_last",
            "etcd_snap_fsync_duration_seconds_count",
        ] {
            #expect((totals[name] ?? 0) > 0, "\(name) is \(totals[name] ?? 0) after the session")
        }
    }
}
