import Foundation
import Node
import Prometheus
import Synchronization

/// etcd's peer-network metrics, labelled with the peer's id in hex as etcd labels them (`To`, `From`).
final class PeerMetrics: Sendable {
    private let registry: PrometheusCollectorRegistry
    private let counters = Mutex<[String: Counter]>([:])
    private let histograms = Mutex<[String: ValueHistogram]>([:])
    private let gauges = Mutex<[String: Gauge]>([:])
    /// Whether each peer's link worked at the last report.
    private let activeState = Mutex<[UInt64: Bool]>([:])

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    private func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    private func counter(_ name: String, _ help: String, _ label: (String, String)) -> Counter {
        counters.withLock { all in
            let key = name + "|" + label.1
            if let c = all[key] { return c }
            let c = registry.makeCounter(descriptor: descriptor(name, help), labels: [label])
            all[key] = c
            return c
        }
    }

    /// The byte counters, by peer id: counted for every batch of Raft messages, so found without formatting a label.
    private let sentBytes = Mutex<[UInt64: Counter]>([:])
    private let receivedBytes = Mutex<[UInt64: Counter]>([:])

    func sent(bytes: Int, to peer: UInt64) {
        count(
            bytes, peer, in: sentBytes, "etcd_network_peer_sent_bytes_total",
            "The total number of bytes sent to peers.",
            label: "To")
    }

    func received(bytes: Int, from peer: UInt64) {
        count(
            bytes, peer, in: receivedBytes, "etcd_network_peer_received_bytes_total",
            "The total number of bytes received from peers.", label: "From")
    }

    private func count(
        _ bytes: Int, _ peer: UInt64, in table: borrowing Mutex<[UInt64: Counter]>, _ name: String, _ help: String,
        label: String
    ) {
        let bytesCounter =
            table.withLock { $0[peer] }
            ?? table.withLock { all in
                let made = counter(name, help, (label, Identity.hex(peer)))
                all[peer] = made
                return made
            }
        bytesCounter.increment(by: Int64(bytes))
    }

    func sendFailed(to peer: UInt64) {
        counter(
            "etcd_network_peer_sent_failures_total", "The total number of send failures from peers.",
            ("To", Identity.hex(peer))
        ).increment()
    }

    /// A working Raft link was replaced by a fresh connection: `renewal` after this member's TLS material changed,
    /// `goaway` when the peer asked (after its own renewal).
    func linkReplaced(to peer: UInt64, _ reason: RaftLinkState.Renewal) {
        counters.withLock { all in
            let key = "quorum_peer_link_renewals_total|" + Identity.hex(peer) + "|" + reason.rawValue
            if let c = all[key] { return c }
            let c = registry.makeCounter(
                descriptor: descriptor(
                    "quorum_peer_link_renewals_total",
                    "Raft links to peers re-established without a gap, by reason (renewal, goaway)."),
                labels: [("To", Identity.hex(peer)), ("reason", reason.rawValue)])
            all[key] = c
            return c
        }.increment()
    }

    /// A peer aborted the TLS handshake of a dial over this member's certificate.
    func dialRefused(to peer: UInt64) {
        counter(
            "quorum_peer_certificate_refusals_total",
            "Dials whose TLS handshake a peer aborted over this member's certificate.", ("To", Identity.hex(peer))
        ).increment()
    }

    func snapshotSent(to peer: UInt64, succeeded: Bool) {
        let name = succeeded ? "etcd_network_snapshot_send_success" : "etcd_network_snapshot_send_failures"
        counter(name, "Total number of snapshot sends.", ("To", Identity.hex(peer))).increment()
    }

    func roundTrip(seconds: Double, to peer: UInt64) {
        let key = Identity.hex(peer)
        let histogram = histograms.withLock { all in
            if let h = all[key] { return h }
            let buckets = (0..<16).map { 0.0001 * pow(2, Double($0)) }
            let h = registry.makeValueHistogram(
                descriptor: descriptor(
                    "etcd_network_peer_round_trip_time_seconds", "Round-Trip-Time histogram between peers"),
                labels: [("To", key)], buckets: buckets)
            all[key] = h
            return h
        }
        histogram.record(seconds)
    }

    /// `etcd_network_active_peers{Local,Remote}`, 1 while the link to a peer works, and
    /// `etcd_network_disconnected_peers_total{Local,Remote}`, counting the times a working link was lost, as etcd
    /// labels them.
    func activePeers(_ reachable: [UInt64: Bool], local: UInt64) {
        let localHex = Identity.hex(local)
        for (peer, isReachable) in reachable {
            let remoteHex = Identity.hex(peer)
            let (gauge, wasActive) = gauges.withLock { all -> (Gauge, Bool) in
                let key = "active|" + remoteHex
                if let g = all[key] { return (g, activeState.withLock { $0[peer] ?? false }) }
                let g = registry.makeGauge(
                    descriptor: descriptor(
                        "etcd_network_active_peers", "The current number of active peer connections."),
                    labels: [("Local", localHex), ("Remote", remoteHex)])
                all[key] = g
                return (g, false)
            }
            gauge.set(Double(isReachable ? 1 : 0))
            activeState.withLock { $0[peer] = isReachable }
            if wasActive && !isReachable {
                counters.withLock { all in
                    let key = "etcd_network_disconnected_peers_total|" + remoteHex
                    if let c = all[key] { return c }
                    let c = registry.makeCounter(
                        descriptor: descriptor(
                            "etcd_network_disconnected_peers_total", "The total number of disconnected peers."),
                        labels: [("Local", localHex), ("Remote", remoteHex)])
                    all[key] = c
                    return c
                }.increment()
            }
        }
    }
}
