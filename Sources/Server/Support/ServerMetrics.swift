import Backup
import Foundation
import Node
import Prometheus
import RPCTransport
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// etcd's metric names on a Prometheus registry, so existing etcd dashboards and alerts work unchanged.
/// Counters and histograms are fed as things happen (`NodeObserver`, RPC counting); gauges are refreshed from
/// the member's state when scraped.
public final class ServerMetrics: NodeObserver, Sendable {
    public let registry = PrometheusCollectorRegistry()

    private let walFsync: ValueHistogram
    private let backendCommit: ValueHistogram
    private let snapshotSave: ValueHistogram
    private let puts: Counter
    private let deletes: Counter
    private let txns: Counter
    private let ranges: Counter
    /// etcd 3.4 exports the mvcc counters twice, under `etcd_mvcc_` and `etcd_debugging_mvcc_`; dashboards use both.
    private let debuggingPuts: Counter
    private let debuggingDeletes: Counter
    private let debuggingTxns: Counter
    private let debuggingRanges: Counter
    private let leasesGranted: Counter
    private let leasesRevoked: Counter
    /// A counter fed from the Raft status's running total when scraped (`leaderChangesCounted` is what it holds).
    private let leaderChanges: Counter
    private let leaderChangesCounted = Mutex(0)
    private let slowApplies: Counter
    /// Counters fed from running totals (`total`), with what they hold so far.
    private let totals = Mutex<[String: (counter: Counter, counted: Int)]>([:])
    private let defragInflight: Gauge
    private let defragsInFlight = Mutex(0)
    private let defragDuration: ValueHistogram
    private let hashDuration: ValueHistogram
    private let hashRevDuration: ValueHistogram
    private let backendSnapshotDuration: ValueHistogram
    /// `etcd_server_apply_duration_seconds` by operation (and "|false" for failures).
    private let applyDurations = Mutex<[String: ValueHistogram]>([:])
    private let cpuSeconds: Counter
    private let cpuSecondsCounted = Mutex(0.0)
    private let healthSuccesses: Counter
    private let healthFailures: Counter
    /// `etcd_network_client_grpc_received_bytes_total` and `…_sent_bytes_total`, fed by the client listeners.
    let clientTraffic: ClientTraffic
    /// `--metrics extensive`: also the per-method handling-time histograms (`grpc_server_handling_seconds`).
    let extensive: Bool
    private let backupFailures: Counter
    private let proposalsFailed: Counter
    private let leaseTTLs: ValueHistogram
    private let indexCompactionPause: ValueHistogram
    private let dbCompactionPause: ValueHistogram
    private let dbCompactionTotal: ValueHistogram
    private let dbCompactionLast: Gauge
    private let snapFsync: ValueHistogram
    private let snapDBFsync: ValueHistogram
    private let snapDBSave: ValueHistogram
    /// `etcd_server_client_requests_total`, counted where client calls start.
    let clientRequests = ClientRequestCounters()
    private let startTime: Double
    let rpcCounters = Mutex<[String: Counter]>([:])
    /// Per-method gRPC counters, by "service/method" (`rpcCounters(service:method:type:)`).
    let methodCounters = Mutex<[String: RPCMethodCounters]>([:])
    /// TLS and PKI counters by name and label values (created on first use).
    let tlsCounters = Mutex<[String: Counter]>([:])
    /// Certificate expiry gauges by "usage|subject|serial"; replaced certificates' gauges are unregistered.
    let expiryGauges = Mutex<[String: Gauge]>([:])

    public init(extensive: Bool = false) {
        self.extensive = extensive
        let diskBuckets = (0..<14).map { 0.001 * pow(2, Double($0)) }
        walFsync = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL."),
            buckets: diskBuckets)
        backendCommit = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_disk_backend_commit_duration_seconds", "The latency distributions of commit called by backend."),
            buckets: diskBuckets)
        snapshotSave = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_debugging_snap_save_total_duration_seconds",
                "The total latency distributions of save called by snapshot."), buckets: diskBuckets)
        puts = registry.makeCounter(
            descriptor: Self.d("etcd_mvcc_put_total", "Total number of puts seen by this member."))
        deletes = registry.makeCounter(
            descriptor: Self.d("etcd_mvcc_delete_total", "Total number of deletes seen by this member."))
        txns = registry.makeCounter(
            descriptor: Self.d("etcd_mvcc_txn_total", "Total number of txns seen by this member."))
        ranges = registry.makeCounter(
            descriptor: Self.d("etcd_mvcc_range_total", "Total number of ranges seen by this member."))
        debuggingPuts = registry.makeCounter(
            descriptor: Self.d("etcd_debugging_mvcc_put_total", "Total number of puts seen by this member."))
        debuggingDeletes = registry.makeCounter(
            descriptor: Self.d("etcd_debugging_mvcc_delete_total", "Total number of deletes seen by this member."))
        debuggingTxns = registry.makeCounter(
            descriptor: Self.d("etcd_debugging_mvcc_txn_total", "Total number of txns seen by this member."))
        debuggingRanges = registry.makeCounter(
            descriptor: Self.d("etcd_debugging_mvcc_range_total", "Total number of ranges seen by this member."))
        leasesGranted = registry.makeCounter(
            descriptor: Self.d("etcd_debugging_lease_granted_total", "The total number of granted leases."))
        leasesRevoked = registry.makeCounter(
            descriptor: Self.d("etcd_debugging_lease_revoked_total", "The total number of revoked leases."))
        leaderChanges = registry.makeCounter(
            descriptor: Self.d("etcd_server_leader_changes_seen_total", "The number of leader changes seen."))
        defragInflight = registry.makeGauge(
            descriptor: Self.d(
                "etcd_disk_defrag_inflight",
                "Whether or not defrag is active on the member. 1 means active, 0 means not."))
        // etcd's buckets: defragmentation from 0.1 s to about 7 minutes, hashing from 0.01 s to about 3 minutes,
        // snapshots from 0.01 s to about 22 minutes.
        defragDuration = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_disk_backend_defrag_duration_seconds", "The latency distribution of backend defragmentation."),
            buckets: (0..<13).map { 0.1 * pow(2, Double($0)) })
        hashDuration = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_mvcc_hash_duration_seconds", "The latency distribution of storage hash operation."),
            buckets: (0..<14).map { 0.01 * pow(2, Double($0)) })
        hashRevDuration = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_mvcc_hash_rev_duration_seconds", "The latency distribution of storage hash by revision operation."
            ),
            buckets: (0..<14).map { 0.01 * pow(2, Double($0)) })
        backendSnapshotDuration = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_disk_backend_snapshot_duration_seconds", "The latency distribution of backend snapshots."),
            buckets: (0..<17).map { 0.01 * pow(2, Double($0)) })
        slowApplies = registry.makeCounter(
            descriptor: Self.d(
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk)."))
        cpuSeconds = registry.makeCounter(
            descriptor: Self.d("process_cpu_seconds_total", "Total user and system CPU time spent in seconds."))
        healthSuccesses = registry.makeCounter(
            descriptor: Self.d("etcd_server_health_success", "The total number of successful health checks"))
        healthFailures = registry.makeCounter(
            descriptor: Self.d("etcd_server_health_failures", "The total number of failed health checks"))
        clientTraffic = ClientTraffic(
            received: registry.makeCounter(
                descriptor: Self.d(
                    "etcd_network_client_grpc_received_bytes_total",
                    "The total number of bytes received from grpc clients.")),
            sent: registry.makeCounter(
                descriptor: Self.d(
                    "etcd_network_client_grpc_sent_bytes_total", "The total number of bytes sent to grpc clients.")))
        backupFailures = registry.makeCounter(
            descriptor: Self.d("quorum_backup_failures_total", "Scheduled backups that failed on this member."))
        proposalsFailed = registry.makeCounter(
            descriptor: Self.d("etcd_server_proposals_failed_total", "The total number of failed proposals seen."))
        // etcd's buckets: TTLs from 1 s to about three months; compaction pauses from 0.5 ms (the index) and 1 ms
        // (the database) to about 4 s, the whole database compaction from 100 ms to about 13 minutes; snapshot
        // syncs from 1 ms to about 8 s, and a received database snapshot's save from 0.1 s to about 51 s.
        leaseTTLs = registry.makeValueHistogram(
            descriptor: Self.d("etcd_debugging_lease_ttl_total", "Bucketed histogram of lease TTLs."),
            buckets: (0..<24).map { pow(2, Double($0)) })
        indexCompactionPause = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
                "Bucketed histogram of index compaction pause duration."),
            buckets: (0..<14).map { 0.5 * pow(2, Double($0)) })
        dbCompactionPause = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                "Bucketed histogram of db compaction pause duration."),
            buckets: (0..<13).map { pow(2, Double($0)) })
        dbCompactionTotal = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                "Bucketed histogram of db compaction total duration."),
            buckets: (0..<14).map { 100 * pow(2, Double($0)) })
        dbCompactionLast = registry.makeGauge(
            descriptor: Self.d(
                "etcd_debugging_mvcc_db_compaction_last",
                "The unix time of the last db compaction. Resets to 0 on start."))
        dbCompactionLast.set(0.0)
        snapFsync = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_snap_fsync_duration_seconds", "The latency distributions of fsync called by snap."),
            buckets: diskBuckets)
        snapDBFsync = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_snap_db_fsync_duration_seconds", "The latency distributions of fsyncing .snap.db file"),
            buckets: diskBuckets)
        snapDBSave = registry.makeValueHistogram(
            descriptor: Self.d(
                "etcd_snap_db_save_total_duration_seconds", "The total latency distributions of v3 snapshot save"),
            buckets: (0..<10).map { 0.1 * pow(2, Double($0)) })
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        startTime = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    // MARK: NodeObserver

    public func walSynced(nanoseconds: UInt64, entries: Int) { walFsync.record(Double(nanoseconds) / 1e9) }
    public func backendCommitted(nanoseconds: UInt64) { backendCommit.record(Double(nanoseconds) / 1e9) }
    public func snapshotSaved(nanoseconds: UInt64) { snapshotSave.record(Double(nanoseconds) / 1e9) }
    public func proposalFailed() { proposalsFailed.increment() }

    public func applied(_ kind: AppliedKind) {
        switch kind {
        case .put:
            puts.increment()
            debuggingPuts.increment()
        case .deleteRange:
            deletes.increment()
            debuggingDeletes.increment()
        case .txn:
            txns.increment()
            debuggingTxns.increment()
        case .leaseGrant: leasesGranted.increment()
        case .leaseRevoke: leasesRevoked.increment()
        default: break
        }
    }

    public func applyFinished(operation: String, nanoseconds: Int64, succeeded: Bool, slow: Bool) {
        if slow { slowApplies.increment() }
        let key = succeeded ? operation : operation + "|false"
        let histogram =
            applyDurations.withLock { $0[key] }
            ?? applyDurations.withLock { all in
                let made = registry.makeValueHistogram(
                    descriptor: Self.d(
                        "etcd_server_apply_duration_seconds",
                        "The latency distributions of v2 apply called by backend."),
                    labels: [("op", operation), ("success", succeeded ? "true" : "false"), ("version", "v3")],
                    buckets: (0..<20).map { 0.0001 * pow(2, Double($0)) })
                all[key] = made
                return made
            }
        histogram.record(Double(nanoseconds) / 1e9)
    }

    public func rangeServed() {
        ranges.increment()
        debuggingRanges.increment()
    }

    public func leaseGranted(ttl: Int64) { leaseTTLs.record(Double(ttl)) }
    public func indexCompacted(nanoseconds: UInt64) { indexCompactionPause.record(Double(nanoseconds) / 1e6) }
    public func compactionStepped(nanoseconds: UInt64) { dbCompactionPause.record(Double(nanoseconds) / 1e6) }
    public func compactionFinished(nanoseconds: UInt64) {
        dbCompactionTotal.record(Double(nanoseconds) / 1e6)
        // Whole seconds, as etcd sets it.
        dbCompactionLast.set(Date().timeIntervalSince1970.rounded(.down))
    }
    public func snapshotSynced(nanoseconds: UInt64) { snapFsync.record(Double(nanoseconds) / 1e9) }

    public func snapshotDatabaseSaved(nanoseconds: UInt64, syncNanoseconds: UInt64) {
        snapDBFsync.record(Double(syncNanoseconds) / 1e9)
        snapDBSave.record(Double(nanoseconds) / 1e9)
    }

    /// `etcd_disk_defrag_inflight`: 1 while a defragmentation runs.
    func defragmentations(inFlight change: Int) {
        let now = defragsInFlight.withLock { count in
            count += change
            return count
        }
        defragInflight.set(Double(max(0, now)))
    }

    /// `etcd_disk_backend_defrag_duration_seconds`.
    func defragmented(seconds: Double) { defragDuration.record(seconds) }

    /// `etcd_mvcc_hash_duration_seconds` (Hash) and `etcd_mvcc_hash_rev_duration_seconds` (HashKV).
    func hashed(seconds: Double, atRevision: Bool) {
        (atRevision ? hashRevDuration : hashDuration).record(seconds)
    }

    /// `etcd_disk_backend_snapshot_duration_seconds`: making and sending a snapshot to a client.
    func snapshotSent(seconds: Double) { backendSnapshotDuration.record(seconds) }

    /// A `/health` check answered (`etcd_server_health_success` / `etcd_server_health_failures`).
    func healthChecked(healthy: Bool) {
        if healthy { healthSuccesses.increment() } else { healthFailures.increment() }
    }

    /// grpc_server_handled_total, as go-grpc-prometheus labels it.
    func rpcHandled(service: String, method: String, type: String, code: String) {
        rpcCounter(service: service, method: method, type: type, code: code).increment()
    }

    /// The grpc_server_handled_total counter of one method and code (made on first use).
    func rpcCounter(service: String, method: String, type: String, code: String) -> Counter {
        let key = "\(service)/\(method)/\(code)"
        return rpcCounters.withLock { counters in
            if let c = counters[key] { return c }
            let c = registry.makeCounter(
                descriptor: Self.d(
                    "grpc_server_handled_total",
                    "Total number of RPCs completed on the server, regardless of success or failure."),
                labels: [("grpc_code", code), ("grpc_method", method), ("grpc_service", service), ("grpc_type", type)])
            counters[key] = c
            return c
        }
    }

    // MARK: TLS and PKI

    /// `quorum_tls_handshake_failures_total{reason}`: every refused handshake, by the reason logged with it.
    public func tlsHandshakeFailed(reason: String) {
        tlsCounter(
            "quorum_tls_handshake_failures_total", "TLS handshakes refused, by reason.", [("reason", reason)]
        ).increment()
    }

    /// `quorum_pki_renewals_total{usage}`: certificates (re-)issued by the managed PKI.
    public func pkiRenewed(usage: String) {
        tlsCounter(
            "quorum_pki_renewals_total", "Certificates issued or renewed by the managed PKI.", [("usage", usage)]
        ).increment()
    }

    /// `quorum_pki_renewal_failures_total{usage}`: renewals that failed or were impossible (no CA key).
    public func pkiRenewalFailed(usage: String) {
        tlsCounter(
            "quorum_pki_renewal_failures_total", "Certificate renewals that failed.", [("usage", usage)]
        ).increment()
    }

    /// `quorum_tls_reloads_total{side}`: TLS contexts swapped without a restart.
    public func tlsReloaded(side: String) {
        tlsCounter("quorum_tls_reloads_total", "TLS material reloads without restart.", [("side", side)]).increment()
    }

    /// Replaces the set of `quorum_pki_certificate_expiry_timestamp_seconds{usage,subject,serial}` gauges (notAfter
    /// as Unix seconds) with `certificates`; gauges of certificates no longer in use are removed so that an alert on
    /// `expiry - time() < …` never fires for a certificate that was already renewed.
    public func setCertificateExpiries(
        _ certificates: [(usage: String, subject: String, serial: String, notAfter: Double)]
    ) {
        expiryGauges.withLock { gauges in
            var keep: Set<String> = []
            for certificate in certificates {
                let key = "\(certificate.usage)|\(certificate.subject)|\(certificate.serial)"
                keep.insert(key)
                let gauge =
                    gauges[key]
                    ?? registry.makeGauge(
                        descriptor: Self.d(
                            "quorum_pki_certificate_expiry_timestamp_seconds",
                            "Expiry (notAfter) of each certificate in use, as Unix time."),
                        labels: [
                            ("usage", certificate.usage), ("subject", certificate.subject),
                            ("serial", certificate.serial),
                        ])
                gauges[key] = gauge
                gauge.set(certificate.notAfter)
            }
            for (key, gauge) in gauges where !keep.contains(key) {
                registry.unregisterGauge(gauge)
                gauges.removeValue(forKey: key)
            }
        }
    }

    private func tlsCounter(_ name: String, _ help: String, _ labels: [(String, String)]) -> Counter {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        return tlsCounters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = registry.makeCounter(descriptor: Self.d(name, help), labels: labels)
            counters[key] = counter
            return counter
        }
    }

    // MARK: Scrape

    /// Refreshes the gauges from `node` and renders the exposition text.
    public func render(node: MemberNode, backup: BackupStatus? = nil) -> [UInt8] {
        if let backup { renderBackup(backup) }
        let status = node.status
        let size = (try? node.backend.size()) ?? (total: 0, inUse: 0)
        gauge(
            "etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
            status.hasLeader ? 1 : 0)
        gauge(
            "etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            status.isLeader ? 1 : 0)
        gauge(
            "etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            status.isLearner ? 1 : 0)
        leaderChangesCounted.withLock { counted in
            if status.leaderChanges > counted {
                leaderChanges.increment(by: Int64(status.leaderChanges - counted))
                counted = status.leaderChanges
            }
        }
        gauge(
            "etcd_server_proposals_committed_total", "The total number of consensus proposals committed.",
            Double(status.commitIndex))
        gauge(
            "etcd_server_proposals_applied_total", "The total number of consensus proposals applied.",
            Double(status.appliedIndex))
        gauge(
            "etcd_server_proposals_pending", "The current number of pending proposals to commit.",
            Double(node.pendingProposalCount))
        gauge(
            "etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.",
            Double(node.config.quotaBackendBytes))
        gauge(
            "etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.",
            Double(size.total))
        gauge(
            "etcd_debugging_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.", Double(size.total))
        gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.", Double(size.inUse))
        gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", Double(node.store.keyCount()))
        gauge(
            "etcd_debugging_mvcc_current_revision", "The current revision of store.",
            Double(node.store.revisions.current))
        gauge(
            "etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.",
            Double(node.store.revisions.compacted))
        gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", Double(node.hub.watcherCount))
        gauge(
            "etcd_debugging_mvcc_slow_watcher_total", "Total number of unsynced slow watchers.",
            Double(node.hub.unsyncedCount))
        gauge("etcd_debugging_lease_total", "The number of active leases.", Double(node.leases.ids.count))
        gauge(
            "etcd_debugging_mvcc_total_put_size_in_bytes", "The total size of put kv pairs seen by this member.",
            Double(node.store.putBytes.load(ordering: .relaxed)))
        total(
            "etcd_debugging_mvcc_db_compaction_keys_total", "Total number of db keys compacted.",
            node.store.compactedRows.load(ordering: .relaxed))
        gauge(
            "etcd_mvcc_db_open_read_transactions", "The number of currently open read transactions",
            Double(node.backend.openReadTransactions))
        let cache = node.store.valueCacheStats
        total(
            "quorum_mvcc_value_cache_hits_total", "Values found in the value cache (--value-cache-bytes).", cache.hits)
        total(
            "quorum_mvcc_value_cache_misses_total", "Values the value cache did not hold, read from the backend.",
            cache.misses)
        gauge(
            "quorum_mvcc_value_cache_bytes", "Bytes the value cache holds (values and their bookkeeping).",
            Double(cache.bytes))
        let watches = node.hub.counters
        gauge(
            "etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.",
            Double(watches.openStreams.load(ordering: .relaxed)))
        gauge(
            "etcd_debugging_mvcc_pending_events_total", "Total number of pending events to be sent.",
            Double(max(0, watches.pendingEvents.load(ordering: .relaxed))))
        total(
            "etcd_debugging_mvcc_events_total", "Total number of events sent by this member.",
            watches.sentEvents.load(ordering: .relaxed))
        for (type, version, count) in clientRequests.totals() {
            total(
                "etcd_server_client_requests_total", "The total number of client requests per client version.", count,
                labels: [("type", type), ("client_api_version", version)])
        }
        labeled(
            "etcd_server_version", "Which version is running. 1 for 'server_version' label with current version.",
            ("server_version", Version.etcdServer))
        if let clusterVersion = node.versions.values.clusterVersion {
            // Set once the leader decided it, as etcd sets it: major.minor only.
            labeled(
                "etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current cluster version",
                ("cluster_version", String(clusterVersion.split(separator: ".").prefix(2).joined(separator: "."))))
        }
        labeled(
            "etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            ("server_id", Identity.hex(node.memberID)))
        let counters = node.counters
        total(
            "etcd_debugging_lease_renewed_total", "The number of renewed leases seen by the leader.",
            node.leases.renewals.load(ordering: .relaxed))
        total(
            "etcd_debugging_server_lease_expired_total", "The total number of expired leases.",
            counters.leaseExpirations.load(ordering: .relaxed))
        total(
            "etcd_server_read_indexes_failed_total", "The total number of failed read indexes seen.",
            counters.readIndexFailures.load(ordering: .relaxed))
        total(
            "etcd_server_heartbeat_send_failures_total",
            "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
            counters.heartbeatSendFailures.load(ordering: .relaxed))
        total(
            "etcd_server_slow_read_indexes_total",
            "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
            counters.slowReadIndexes.load(ordering: .relaxed))
        total(
            "etcd_server_learner_promote_successes",
            "The total number of successful learner promotions while this member is leader.",
            counters.learnerPromotions.load(ordering: .relaxed))
        gauge(
            "etcd_server_snapshot_apply_in_progress_total",
            "1 if the server is applying the incoming snapshot. 0 if none.",
            Double(counters.snapshotsApplying.load(ordering: .relaxed)))
        gauge(
            "etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.",
            Double(node.walStats.withLock { $0.bytesWritten }))
        gauge(
            "etcd_debugging_auth_revision", "The current revision of auth store.", Double(node.auth.store.revision))
        renderProcess()
        return registry.emitToBuffer()
    }

    /// The scheduled backups (`--backup-dir`), for alerts such as "no successful backup in 40 minutes".
    private func renderBackup(_ b: BackupStatus) {
        if let last = b.lastSuccess {
            gauge(
                "quorum_backup_last_success_timestamp_seconds", "When the newest backup of this member succeeded.",
                last.timeIntervalSince1970)
        }
        if let seconds = b.lastDuration {
            gauge("quorum_backup_last_duration_seconds", "How long the newest successful backup took.", seconds)
        }
        if let bytes = b.lastSize {
            gauge("quorum_backup_last_size_bytes", "Size of the newest successful backup's snapshot.", Double(bytes))
        }
        gauge(
            "quorum_backup_consecutive_failures", "Backups that failed since the last success (leader only).",
            Double(b.consecutiveFailures))
        if let newest = b.newestBackup {
            gauge(
                "quorum_backup_newest_timestamp_seconds", "Creation time of the newest backup in the store.",
                newest.timeIntervalSince1970)
        }
    }

    /// A backup attempt failed.
    func backupFailed() { backupFailures.increment() }

    /// A counter fed from a running total kept elsewhere: the difference since the last scrape is added.
    private func total(_ name: String, _ help: String, _ value: Int, labels: [(String, String)] = []) {
        let key = name + labels.map { "|\($0.1)" }.joined()
        let (counter, added) = totals.withLock { all -> (Counter, Int) in
            let counter = all[key]?.counter ?? registry.makeCounter(descriptor: Self.d(name, help), labels: labels)
            let added = max(0, value - (all[key]?.counted ?? 0))
            all[key] = (counter, max(value, all[key]?.counted ?? 0))
            return (counter, added)
        }
        if added > 0 { counter.increment(by: Int64(added)) }
    }

    private func gauge(_ name: String, _ help: String, _ value: Double) {
        registry.makeGauge(descriptor: Self.d(name, help)).set(Double(value))
    }

    private func labeled(_ name: String, _ help: String, _ label: (String, String)) {
        registry.makeGauge(descriptor: Self.d(name, help), labels: [label]).set(Double(1))
    }

    /// etcd's full metric names are given as is; an empty unit adds nothing to them.
    static func d(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The Prometheus client's process collector and etcd's `os_fd_*`, read from /proc as Go's client reads them.
    private func renderProcess() {
        let process = ProcessStats.read()
        gauge("process_resident_memory_bytes", "Resident memory size in bytes.", Double(process.residentBytes))
        gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", Double(process.virtualBytes))
        gauge(
            "process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.",
            process.virtualLimit)
        gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", startTime)
        cpuSecondsCounted.withLock { counted in
            if process.cpuSeconds > counted {
                cpuSeconds.increment(by: process.cpuSeconds - counted)
                counted = process.cpuSeconds
            }
        }
        gauge("process_open_fds", "Number of open file descriptors.", Double(process.openFDs))
        gauge("process_max_fds", "Maximum number of open file descriptors.", process.fdLimit)
        gauge("os_fd_used", "The number of used file descriptors.", Double(process.openFDs))
        gauge("os_fd_limit", "The file descriptor limit.", process.fdLimit)
    }

    static func residentBytes() -> Int { ProcessStats.read().residentBytes }
}
