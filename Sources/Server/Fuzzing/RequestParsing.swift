import EtcdProto
import MVCC
import SwiftProtobuf

/// The member's own parsing of client requests, reachable without a running member: the fuzz targets
/// (`FuzzHarness`) feed it arbitrary bytes. Each entry point calls the code the HTTP router and the JSON gateway
/// run, not a copy of it, so what the fuzzer finds is in the server.
package enum RequestParsing {
    /// The JSON gateway's method for `path` (`/v3/kv/range` → "range"), nil outside its routes.
    package static func gatewayMethod(forPath path: String) -> String? {
        JSONGateway.method(for: path)?.rawValue
    }

    /// Whether `path` is under one of the gateway's prefixes (an unknown method there is 404).
    package static func isGatewayPath(_ path: String) -> Bool {
        JSONGateway.isGatewayPath(path)
    }

    /// Decodes a gateway request body as the gateway does (an empty or all-space body is the default request).
    package static func decodeGatewayBody<Request: SwiftProtobuf.Message>(_ body: [UInt8], as: Request.Type) throws
        -> Request
    {
        try JSONGateway.decode(body)
    }

    /// Splits `/v3/watch`'s body into its JSON values and decodes each as a `WatchRequest`, stopping at the first
    /// that does not decode, as the gateway does.
    package static func gatewayWatchRequests(_ body: [UInt8]) -> [Etcdserverpb_WatchRequest] {
        var requests: [Etcdserverpb_WatchRequest] = []
        for value in JSONGateway.jsonValues(body) {
            guard
                let request = try? Etcdserverpb_WatchRequest(jsonUTF8Bytes: Array(value), options: JSONGateway.decoding)
            else { break }
            requests.append(request)
        }
        return requests
    }

    /// The watcher a create request asks for, as the gRPC Watch call and the gateway build it (responses fragmented
    /// from etcd's default --max-request-bytes, 1.5 MiB, when the request asks for fragments).
    package static func watchSpec(_ create: Etcdserverpb_WatchCreateRequest) -> WatchRequestSpec {
        WatchRequestSpec(create, maxRequestBytes: 1_572_864)
    }
}
