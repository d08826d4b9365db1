import GRPCCore
import Node
import RPCTransport
import ReloadingTLS

extension EtcdError {
    /// The gRPC status etcd sends for this error.
    var rpcError: RPCError {
        let code = Status.Code(rawValue: code.rawValue).flatMap(RPCError.Code.init) ?? .unknown
        return RPCError(code: code, message: message)
    }

    /// The same status for the frame-level transport (fast routes, the overload answer).
    var rpcStatus: RPCStatus { RPCStatus(code: rpcError.code, message: message) }
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

/// How the calls of a client listener learn who sends them: the member's auth state (to know whether auth is on
/// at all) and, when the listener verifies client certificates, the verified common name of each connection.
struct ClientAuthentication: RPCClientAuthentication {
    let auth: AuthState
    let identities: ClientIdentityRegistry?

    var isEnabled: Bool { auth.isEnabled }

    func commonName(forRemote remote: String) -> String? { identities?.commonName(forRemote: remote) }
}

extension RPCStreamHandle {
    /// The caller's credentials while auth is on (the call's `token` metadata and the connection's verified
    /// certificate name), nil while it is off: the hot path then does nothing more.
    func credentials(token: String?) -> Credentials? {
        guard wantsCredentials else { return nil }
        return Credentials(token: token, commonName: clientCommonName)
    }

    func finish(_ error: EtcdError) {
        finish(error.rpcStatus)
    }
}
