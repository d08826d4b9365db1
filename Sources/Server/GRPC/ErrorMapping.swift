import GRPCCore
import Node

extension EtcdError {
    /// The gRPC status etcd sends for this error.
    var rpcError: RPCError {
        let code = Status.Code(rawValue: code.rawValue).flatMap(RPCError.Code.init) ?? .unknown
        return RPCError(code: code, message: message)
    }
}

/// Runs a handler body, turning `EtcdError` into the matching gRPC status.
@inline(__always)
func rpc<T>(_ body: () async throws(EtcdError) -> T) async throws -> T {
    do {
        return try await body()
    } catch {
        throw error.rpcError
    }
}
