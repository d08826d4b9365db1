import GRPCCore

/// Counts every RPC by service, method and final status code (`grpc_server_handled_total`), as etcd's
/// go-grpc-prometheus middleware labels them.
struct RPCMetricsInterceptor: ServerInterceptor {
    let metrics: ServerMetrics

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let service = context.descriptor.service.fullyQualifiedService
        let method = context.descriptor.method
        let type: String
        switch context.descriptor.type {
        case .unary: type = "unary"
        case .clientStreaming: type = "client_stream"
        case .serverStreaming: type = "server_stream"
        case .bidirectionalStreaming: type = "bidi_stream"
        case .none: type = "unknown"
        }
        let metrics = self.metrics
        @Sendable func record(_ error: (any Error)?) {
            let code: String
            if let error = error as? RPCError {
                code = Self.name(error.code)
            } else {
                code = error == nil ? "OK" : "Unknown"
            }
            metrics.rpcHandled(service: service, method: method, type: type, code: code)
        }
        var response: StreamingServerResponse<Output>
        do {
            response = try await next(request, context)
        } catch {
            record(error)
            throw error
        }
        switch response.accepted {
        case .success(var contents):
            let producer = contents.producer
            contents.producer = { writer in
                do {
                    let trailers = try await producer(writer)
                    record(nil)
                    return trailers
                } catch {
                    record(error)
                    throw error
                }
            }
            response.accepted = .success(contents)
        case .failure(let error):
            record(error)
        }
        return response
    }

    static func name(code: Int) -> String {
        Status.Code(rawValue: code).flatMap(RPCError.Code.init).map(name) ?? "Unknown"
    }

    static func name(_ code: RPCError.Code) -> String {
        switch code {
        case .cancelled: return "Canceled"
        case .unknown: return "Unknown"
        case .invalidArgument: return "InvalidArgument"
        case .deadlineExceeded: return "DeadlineExceeded"
        case .notFound: return "NotFound"
        case .alreadyExists: return "AlreadyExists"
        case .permissionDenied: return "PermissionDenied"
        case .resourceExhausted: return "ResourceExhausted"
        case .failedPrecondition: return "FailedPrecondition"
        case .aborted: return "Aborted"
        case .outOfRange: return "OutOfRange"
        case .unimplemented: return "Unimplemented"
        case .internalError: return "Internal"
        case .unavailable: return "Unavailable"
        case .dataLoss: return "DataLoss"
        case .unauthenticated: return "Unauthenticated"
        default: return "Unknown"
        }
    }
}
