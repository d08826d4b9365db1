import Foundation
import TestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// An HTTP/1.1 client on a plain socket, reading a response piece by piece: the JSON gateway's streamed responses
/// (one chunk per message) and calls that must be seen waiting. Every read is bounded by a timeout.
final class RawHTTPConnection {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var status = 0
    private(set) var headers: [String: String] = [:]

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            Glibc.close(fd)
            throw TestFailure("connect to 127.0.0.1:\(port): errno \(errno)")
        }
    }

    deinit { close() }

    private var closed = false

    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    /// Sends one request with a `Content-Length` body.
    func send(_ method: String = "POST", _ path: String, body: String = "", headers extra: [String: String] = [:])
        throws
    {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.utf8.count)\r\n"
        if !body.isEmpty { text += "Content-Type: application/json\r\n" }
        for (name, value) in extra { text += "\(name): \(value)\r\n" }
        text += "\r\n" + body
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestFailure("send: errno \(errno)") }
            sent += n
        }
    }

    /// Reads more bytes, waiting at most `timeout` seconds; false on timeout, throws at end of stream.
    private func fill(timeout: Double) throws -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&poller, 1, Int32(timeout * 1000))
        if ready == 0 { return false }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &chunk, chunk.count, 0)
        guard n > 0 else { throw TestFailure("connection closed by the server") }
        buffer += chunk[0..<n]
        return true
    }

    private func readLine(timeout: Double) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let end = buffer.indices.dropLast().first(where: { buffer[$0] == 13 && buffer[$0 + 1] == 10 }) {
                let line = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(end + 2)
                return line
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0, try fill(timeout: left) else { throw TestFailure("no complete line within \(timeout)s") }
        }
    }

    private func readBytes(_ count: Int, timeout: Double) throws -> [UInt8] {
        let deadline = Date().addingTimeInterval(timeout)
        while buffer.count < count {
            let left = deadline.timeIntervalSinceNow
            guard left > 0, try fill(timeout: left) else { throw TestFailure("no \(count) bytes within \(timeout)s") }
        }
        let bytes = Array(buffer[..<count])
        buffer.removeFirst(count)
        return bytes
    }

    /// Waits up to `timeout` seconds for the response head; false if none came (the call is still waiting).
    func readHead(timeout: Double = 15) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while !buffer.contains(10) {
            let left = deadline.timeIntervalSinceNow
            guard left > 0, try fill(timeout: left) else { return false }
        }
        let statusLine = try readLine(timeout: timeout)
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let code = Int(parts[1]) else { throw TestFailure("bad status line \(statusLine)") }
        status = code
        headers = [:]
        while true {
            let line = try readLine(timeout: timeout)
            if line.isEmpty { break }
            if let colon = line.firstIndex(of: ":") {
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...]
                    .trimmingCharacters(in: .whitespaces)
            }
        }
        return true
    }

    /// The next chunk of a chunked body, or nil at its end.
    func nextChunk(timeout: Double = 15) throws -> String? {
        let sizeLine = try readLine(timeout: timeout)
        guard let size = Int(sizeLine.split(separator: ";")[0], radix: 16) else {
            throw TestFailure("bad chunk size line \(sizeLine)")
        }
        if size == 0 {
            _ = try readLine(timeout: timeout)
            return nil
        }
        let bytes = try readBytes(size, timeout: timeout)
        _ = try readLine(timeout: timeout)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A whole response: the head, then a `Content-Length` body or every chunk of a chunked one.
    func response(timeout: Double = 15) throws -> (status: Int, body: String) {
        guard try readHead(timeout: timeout) else { throw TestFailure("no response within \(timeout)s") }
        if headers["transfer-encoding"] == "chunked" {
            var body = ""
            while let chunk = try nextChunk(timeout: timeout) { body += chunk }
            return (status, body)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        return (status, String(decoding: try readBytes(length, timeout: timeout), as: UTF8.self))
    }

    /// One request on a new connection, its whole response.
    static func post(port: Int, _ path: String, _ body: String, headers: [String: String] = [:]) throws -> (
        status: Int, body: String
    ) {
        let connection = try RawHTTPConnection(port: port)
        defer { connection.close() }
        try connection.send("POST", path, body: body, headers: headers)
        return try connection.response()
    }
}

/// Parses one JSON object.
func jsonObject(_ text: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw TestFailure("not a JSON object: \(text)")
    }
    return object
}

func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
