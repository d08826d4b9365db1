import EtcdProto
import Foundation
import NIOHTTP1
import Node
import RPCTransport
import SwiftProtobuf

/// The HTTP endpoints etcd serves on its client port: `/health`, `/livez`, `/readyz`, `/version`, `/metrics` and
/// the JSON gateway under `/v3/` (protobuf JSON with the original field names, 64-bit integers as strings, bytes
/// as base64, exactly as etcd's grpc-gateway renders them).
struct EtcdHTTPRouter: HTTPRouting {
    let handler: EtcdHandler
    let metrics: @Sendable () -> [UInt8]
    /// Extra readiness checks (certificates, from the PKI layer): name → failure reason or nil.
    let extraChecks: @Sendable () -> [(String, String?)]
    /// Conditions worth an operator's attention that do not (yet) make the member unhealthy, e.g. a certificate
    /// that will expire soon and cannot be renewed: reported in `/health`'s `reason` while `health` stays "true",
    /// and in `/readyz?verbose`.
    var healthWarnings: @Sendable () -> [String] = { [] }
    /// The JSON gateway's share of `--max-concurrent-streams` (nil: unbounded).
    var gatewayStreams: GatewayStreams? = nil
    /// Told the outcome of every `/health` check (`etcd_server_health_success` / `_failures`).
    var healthChecked: @Sendable (Bool) -> Void = { _ in }

    func handle(_ request: HTTPRequestInfo) async -> HTTPReply {
        switch request.path {
        case "/health":
            let reply = await health(request)
            healthChecked(reply.status == .ok)
            return reply
        case "/livez", "/livez/":
            return await probe(request, checks: ["serializable_read"])
        case "/readyz", "/readyz/":
            return await probe(request, checks: ["data_corruption", "serializable_read", "linearizable_read"])
        case "/version":
            // The cluster version the leader decided through Raft (etcd's "not_decided" before).
            return .json(#"{"etcdserver":"\#(Version.etcdServer)","etcdcluster":"\#(handler.clusterVersionText)"}"#)
        case "/metrics":
            return HTTPReply(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics())
        default:
            if let method = JSONGateway.method(for: request.path) {
                // grpc-gateway's answers for a method other than POST and for a path it has no method for.
                guard request.method == .POST else { return .text("Method Not Allowed\n", status: .methodNotAllowed) }
                return await JSONGateway.call(
                    method, body: request.body, handler: handler, authorization: request.authorization,
                    streams: gatewayStreams)
            }
            if JSONGateway.isGatewayPath(request.path) { return .text("Not Found\n", status: .notFound) }
            return .text("404 page not found\n", status: .notFound)
        }
    }

    // MARK: Health

    /// etcd's `/health`: alarms (unless excluded), a leader, and a read through the log (or a local one with
    /// `?serializable=true`). The JSON and status codes are etcd's; `reason` explains a failure.
    private func health(_ request: HTTPRequestInfo) async -> HTTPReply {
        let excluded = Set((request.query["exclude"] ?? []).map { $0.uppercased() })
        let serializable = request.query["serializable"]?.first == "true"
        if let reason = await healthFailure(excludedAlarms: excluded, serializable: serializable) {
            return .json(#"{"health":"false","reason":"\#(reason)"}"#, status: .serviceUnavailable)
        }
        for (_, failure) in extraChecks() {
            if let failure {
                return .json(#"{"health":"false","reason":"\#(escape(failure))"}"#, status: .serviceUnavailable)
            }
        }
        let warnings = healthWarnings()
        return .json(#"{"health":"true","reason":"\#(escape(warnings.joined(separator: "; ")))"}"#)
    }

    private func healthFailure(excludedAlarms: Set<String>, serializable: Bool) async -> String? {
        let node = handler.node
        for alarm in node.alarms.all where !excludedAlarms.contains("\(alarm.type)".uppercased()) {
            return "ALARM \("\(alarm.type)".uppercased())"
        }
        if !serializable && !node.status.hasLeader { return "RAFT NO LEADER" }
        var probe = Etcdserverpb_RangeRequest()
        probe.key = Data("health".utf8)
        probe.serializable = serializable
        do {
            _ = try await handler.range(probe, .member)
        } catch {
            return serializable ? "QGET ERROR" : "QGET ERROR"
        }
        return nil
    }

    /// `/livez` and `/readyz` in the style of etcd 3.6 (and Kubernetes): "ok", or with `?verbose` one line per
    /// check; `?exclude=name` skips a check.
    private func probe(_ request: HTTPRequestInfo, checks: [String]) async -> HTTPReply {
        let excluded = Set(request.query["exclude"] ?? [])
        var lines: [String] = []
        var failed = false
        var results: [(String, String?)] = []
        for check in checks where !excluded.contains(check) {
            results.append((check, await run(check)))
        }
        if checks.contains("linearizable_read") {
            for (name, failure) in extraChecks() where !excluded.contains(name) { results.append((name, failure)) }
        }
        for (name, failure) in results {
            if let failure {
                failed = true
                lines.append("[-]\(name) failed: \(failure)")
            } else {
                lines.append("[+]\(name) ok")
            }
        }
        let verbose = request.query["verbose"] != nil
        if verbose && checks.contains("linearizable_read") {
            lines += healthWarnings().map { "[!]warning: \($0)" }
        }
        if failed {
            return .text(
                lines.joined(separator: "\n")
                    + "\n\(request.path.hasPrefix("/livez") ? "livez" : "readyz") check failed\n",
                status: .serviceUnavailable)
        }
        return .text(verbose ? lines.joined(separator: "\n") + "\nok\n" : "ok\n")
    }

    private func run(_ check: String) async -> String? {
        var probe = Etcdserverpb_RangeRequest()
        probe.key = Data("health".utf8)
        switch check {
        case "data_corruption":
            return handler.node.alarms.contains(.corrupt) ? "alarm activated: CORRUPT" : nil
        case "serializable_read":
            probe.serializable = true
        default:
            probe.serializable = false
        }
        do {
            _ = try await handler.range(probe, .member)
            return nil
        } catch {
            return error.message
        }
    }

    private func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }
}
