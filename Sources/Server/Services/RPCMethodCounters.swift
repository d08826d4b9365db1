import NIOCore
import Prometheus

/// go-grpc-prometheus's server metrics for one method, as etcd exports them: `grpc_server_started_total`,
/// `grpc_server_msg_received_total`, `grpc_server_msg_sent_total`, `grpc_server_handled_total{grpc_code}` and, with
/// `--metrics extensive`, `grpc_server_handling_seconds`. Made once per method, so the hot path pays an atomic
/// increment per event and formats no label.
final class RPCMethodCounters: Sendable {
    let service: String
    let method: String
    let type: String
    private let ok: Counter
    private let startedCalls: Counter
    private let messagesReceived: Counter
    private let messagesSent: Counter
    /// Only with `--metrics extensive`, as etcd: a histogram observation per call is not free.
    private let handling: ValueHistogram?
    private let metrics: ServerMetrics

    init(metrics: ServerMetrics, service: String, method: String, type: String) {
        self.metrics = metrics
        self.service = service
        self.method = method
        self.type = type
        ok = metrics.rpcCounter(service: service, method: method, type: type, code: "OK")
        let labels = [("grpc_method", method), ("grpc_service", service), ("grpc_type", type)]
        startedCalls = metrics.registry.makeCounter(
            descriptor: ServerMetrics.d("grpc_server_started_total", "Total number of RPCs started on the server."),
            labels: labels)
        messagesReceived = metrics.registry.makeCounter(
            descriptor: ServerMetrics.d(
                "grpc_server_msg_received_total", "Total number of RPC stream messages received on the server."),
            labels: labels)
        messagesSent = metrics.registry.makeCounter(
            descriptor: ServerMetrics.d(
                "grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server."),
            labels: labels)
        handling =
            metrics.extensive
            ? metrics.registry.makeValueHistogram(
                descriptor: ServerMetrics.d(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the "
                        + "server."),
                labels: labels, buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]) : nil
    }

    /// Whether the caller should note when a call started (only the extensive metrics need it).
    var timesCalls: Bool { handling != nil }

    func started() { startedCalls.increment() }
    func received() { messagesReceived.increment() }
    func sent(_ count: Int = 1) { messagesSent.increment(by: Int64(count)) }

    func succeeded(startedAt: NIODeadline? = nil) {
        ok.increment()
        observe(startedAt)
    }

    func failed(code: Int, startedAt: NIODeadline? = nil) {
        metrics.rpcCounter(service: service, method: method, type: type, code: RPCMetricsInterceptor.name(code: code))
            .increment()
        observe(startedAt)
    }

    private func observe(_ startedAt: NIODeadline?) {
        guard let handling, let startedAt else { return }
        handling.record(Double((NIODeadline.now() - startedAt).nanoseconds) / 1e9)
    }
}

extension ServerMetrics {
    /// The counters of one method, made once and kept (calls through grpc-swift look them up per call).
    func rpcCounters(service: String, method: String, type: String) -> RPCMethodCounters {
        methodCounters.withLock { all in
            let key = service + "/" + method
            if let known = all[key] { return known }
            let made = RPCMethodCounters(metrics: self, service: service, method: method, type: type)
            all[key] = made
            return made
        }
    }
}
