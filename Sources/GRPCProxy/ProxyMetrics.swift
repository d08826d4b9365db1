import Prometheus

/// The proxy's own metrics, under etcd's names (`etcd_grpc_proxy_*`, from etcd's `proxy/grpcproxy/metrics.go`)
/// plus two of Quorum's that show the coalescing directly: `quorum_grpc_proxy_client_watchers` (watchers served)
/// and `quorum_grpc_proxy_upstream_watches` (watches held open on members), and the count of watch streams cut
/// off for not reading (`quorum_grpc_proxy_slow_watch_streams_total`).
package final class ProxyMetrics: Sendable {
    package let registry = PrometheusCollectorRegistry()
    let watchersCoalescing: Gauge
    let eventsCoalescing: Counter
    let cacheKeys: Gauge
    let cacheHits: Gauge
    let cacheMisses: Gauge
    let watchers: Gauge
    let upstreamWatches: Gauge
    let slowWatchStreams: Counter

    package init() {
        func named(_ namespace: String, _ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(
                namespace: namespace, subsystem: "grpc_proxy", metricName: name, unitName: unit, helpText: help)
        }
        watchersCoalescing = registry.makeGauge(
            descriptor: named("etcd", "watchers_coalescing", "total", "Total number of current watchers coalescing"))
        eventsCoalescing = registry.makeCounter(
            descriptor: named("etcd", "events_coalescing", "total", "Total number of events coalescing"))
        cacheKeys = registry.makeGauge(
            descriptor: named("etcd", "cache_keys", "total", "Total number of keys/ranges cached"))
        cacheHits = registry.makeGauge(descriptor: named("etcd", "cache_hits", "total", "Total number of cache hits"))
        cacheMisses = registry.makeGauge(
            descriptor: named("etcd", "cache_misses", "total", "Total number of cache misses"))
        watchers = registry.makeGauge(
            descriptor: named("quorum", "client", "watchers", "Client watchers open through the proxy"))
        upstreamWatches = registry.makeGauge(
            descriptor: named("quorum", "upstream", "watches", "Watches the proxy holds open on members"))
        slowWatchStreams = registry.makeCounter(
            descriptor: named(
                "quorum", "slow_watch_streams", "total",
                "Watch streams cut off because their client let 1024 responses queue up"))
    }

    /// The Prometheus text exposition.
    package func text() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}
