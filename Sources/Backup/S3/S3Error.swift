import Foundation

/// A failed S3 request: which operation on which object, the HTTP status and S3's error code and message when the
/// server answered, or the transport failure when it did not.
public struct S3Error: Error, Sendable, Equatable, CustomStringConvertible {
    /// e.g. `PUT`, `GET`, `LIST`, `DELETE`, `CreateMultipartUpload`.
    public var operation: String
    /// `s3://bucket/key`.
    public var resource: String
    /// HTTP status; nil when no response arrived (connection refused, reset, timed out).
    public var status: Int?
    /// S3's error code, e.g. `NoSuchKey`, `AccessDenied`, `SignatureDoesNotMatch`, `NoSuchBucket`.
    public var code: String?
    public var message: String
    public var requestID: String?

    public init(
        operation: String, resource: String, status: Int?, code: String?, message: String, requestID: String? = nil
    ) {
        self.operation = operation
        self.resource = resource
        self.status = status
        self.code = code
        self.message = message
        self.requestID = requestID
    }

    public var description: String {
        var text = "S3 \(operation) \(resource) failed: "
        if let status { text += "HTTP \(status) " }
        if let code { text += "\(code): " }
        text += message
        if let requestID { text += " (request ID \(requestID))" }
        return text
    }

    /// Code used for a response body larger than the caller accepts (not an S3 code).
    static let responseTooLarge = "ResponseTooLarge"

    /// Worth retrying: no response, a server error, throttling, or a request timeout.
    var isRetryable: Bool {
        if code == Self.responseTooLarge { return false }
        guard let status else { return true }
        return status >= 500 || status == 429 || code == "SlowDown" || code == "RequestTimeout"
    }

    /// Builds the error from a non-2xx response (or a 200 whose body is an `<Error>`, as CompleteMultipartUpload can
    /// return).
    public static func from(
        operation: String, resource: String, status: Int, body: [UInt8], requestID: String?
    ) -> S3Error {
        if let root = try? XML.parse(body), root.localName == "Error" {
            return S3Error(
                operation: operation, resource: resource, status: status, code: root.value("Code"),
                message: root.value("Message") ?? "(no message)", requestID: root.value("RequestId") ?? requestID)
        }
        let text = String(decoding: body.prefix(200), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return S3Error(
            operation: operation, resource: resource, status: status, code: nil,
            message: text.isEmpty ? "(no body)" : text, requestID: requestID)
    }
}
