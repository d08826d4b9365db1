import GRPCCore
import Node
import ReloadingTLS

/// The credentials of the call a grpc-swift service method runs for (Cluster, Maintenance, Auth, Election, Lock),
/// set by `AuthInterceptor` for the whole call, streaming responses included.
enum RequestCredentials {
    @TaskLocal static var current: Credentials?
}

/// Reads who sends each call handled by grpc-swift: its `token` metadata and the verified client-certificate name
/// of its connection (by the remote address grpc-swift reports). While auth is off it does nothing.
struct AuthInterceptor: ServerInterceptor {
    let auth: AuthState
    /// Verified client-certificate names by connection, when the client port verifies certificates.
    let identities: ClientIdentityRegistry?

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        guard auth.isEnabled else { return try await next(request, context) }
        let credentials = Credentials(
            token: request.metadata[stringValues: "token"].first(where: { _ in true }),
            commonName: identities?.commonName(forRemote: context.remotePeer))
        var response = try await RequestCredentials.$current.withValue(credentials) {
            try await next(request, context)
        }
        if case .success(var contents) = response.accepted {
            let producer = contents.producer
            contents.producer = { writer in
                try await RequestCredentials.$current.withValue(credentials) { try await producer(writer) }
            }
            response.accepted = .success(contents)
        }
        return response
    }
}

extension EtcdHandler {
    /// The caller of the grpc-swift call being served.
    func currentCaller() async throws(EtcdError) -> Caller {
        try await resolve(RequestCredentials.current)
    }
}
