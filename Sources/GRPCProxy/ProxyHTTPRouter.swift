import EtcdAPI
import EtcdProto
import Foundation
import GRPCCore
import RPCTransport

/// The proxy's HTTP endpoints, on its listen address and on `--metrics-addr`: `/metrics` (and 3.5's
/// `/proxy/metrics`) with the proxy's own metrics, and `/health`, which is healthy when a read through the proxy's
/// members answers within a second (or is refused for lack of permission), as etcd's proxy decides.
struct ProxyHTTPRouter: HTTPRouting {
    let core: ProxyCore

    func handle(_ request: HTTPRequestInfo) async -> HTTPReply {
        let path = request.path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.path
        switch path {
        case "/metrics", "/proxy/metrics":
            return HTTPReply(status: .ok, contentType: "text/plain; version=0.0.4", body: core.metrics.text())
        case "/health":
            if await healthy() { return .json("{\"health\":\"true\"}") }
            return .json("{\"health\":\"false\"}", status: .serviceUnavailable)
        default:
            return .text("404 page not found\n", status: .notFound)
        }
    }

    /// etcd's `checkHealth`: `Get("a")` within a second; a permission error still shows the cluster answers.
    private func healthy() async -> Bool {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data("a".utf8)
        var options = core.upstream.callOptions
        options.timeout = .seconds(1)
        do {
            _ = try await core.upstream.call { client in
                try await Etcdserverpb_KV.Client(wrapping: client).range(request, options: options)
            }
            return true
        } catch let error as RPCError where error.message == "etcdserver: permission denied" {
            return true
        } catch {
            return false
        }
    }
}
