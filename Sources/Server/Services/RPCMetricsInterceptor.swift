import GRPCCore
import NIOCore

/// go-grpc-prometheus's server metrics for the methods grpc-swift serves (`RPCMethodCounters`): calls started and
/// handled (by final status code), messages received and sent, and with `--metrics extensive` the handling time.
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
        let counters = metrics.rpcCounters(service: service, method: method, type: type)
        counters.started()
        metrics.clientRequests.count(
            stream: type != "unary",
            version: request.metadata[stringValues: ClientRequestCounters.versionHeader].first { _ in true })
        let startedAt: NIODeadline? = counters.timesCalls ? .now() : nil
        @Sendable func record(_ error: (any Error)?) {
            if let error {
                let code = (error as? RPCError).map { $0.code.rawValue } ?? RPCError.Code.unknown.rawValue
                counters.failed(code: code, startedAt: startedAt)
            } else {
                counters.succeeded(startedAt: startedAt)
            }
        }
        var counted = request
        counted.messages = RPCAsyncSequence(
            wrapping: request.messages.map { message in
                counters.received()
                return message
            })
        var response: StreamingServerResponse<Output>
        do {
            response = try await next(counted, context)
        } catch {
            record(error)
            throw error
        }
        switch response.accepted {
        case .success(var contents):
            let producer = contents.producer
            contents.producer = { writer in
                do {
                    let trailers = try await producer(
                        RPCWriter(wrapping: CountingWriter(base: writer, counters: counters)))
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

/// Counts the messages a handler writes (`grpc_server_msg_sent_total`).
private struct CountingWriter<Element: Sendable>: RPCWriterProtocol {
    let base: RPCWriter<Element>
    let counters: RPCMethodCounters

    func write(_ element: Element) async throws {
        try await base.write(element)
        counters.sent()
    }

    func write(contentsOf elements: some Sequence<Element>) async throws {
        let all = Array(elements)
        try await base.write(contentsOf: all)
        counters.sent(all.count)
    }
}
