import Foundation
import TestSupport
import Testing

@testable import Backup

#if canImport(Glibc)
    import Glibc
#endif

/// The HTTP client's failure modes against a misbehaving loopback peer: it must never hang, and a body cut short must
/// never look complete.
@Suite struct HTTPTransportTests {
    /// A TCP socket listening on a free loopback port. Connections complete in the kernel's backlog even if nobody
    /// accepts them, which is how a stuck server looks to a client.
    final class Listener: Sendable {
        let fd: Int32
        let port: Int

        init() throws {
            let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard socketFD >= 0, bound == 0, listen(socketFD, 8) == 0 else {
                throw BackupError.io(path: "127.0.0.1", operation: "listen", detail: String(cString: strerror(errno)))
            }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socketFD, $0, &length) }
            }
            fd = socketFD
            port = Int(UInt16(bigEndian: address.sin_port))
        }

        /// Accepts one connection on a thread, reads the request head, sends `response`, closes.
        func serveOnce(_ response: [UInt8]) {
            let fd = fd
            Thread.detachNewThread {
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else { return }
                var buffer = [UInt8](repeating: 0, count: 65536)
                var received: [UInt8] = []
                while !received.suffix(4).elementsEqual([13, 10, 13, 10]) {
                    let n = read(connection, &buffer, buffer.count)
                    if n <= 0 { break }
                    received += buffer[0..<n]
                }
                _ = response.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
                close(connection)
            }
        }

        deinit { close(fd) }
    }

    /// The default idle timeout is far longer than any answer here takes: these tests are about what a misbehaving
    /// server's answer turns into, and the suite shares two cores with CPU-bound tests that can hold the cooperative
    /// pool (and so this client's continuations) for a minute, which must not turn into an idle timeout.
    static func store(port: Int, idleTimeout: TimeInterval = 600) throws -> S3Store {
        var configuration = try S3Store.Configuration(
            url: "s3://bucket/p", region: "us-east-1", endpoint: "http://127.0.0.1:\(port)")
        configuration.idleTimeout = idleTimeout
        configuration.maxAttempts = 1
        return try S3Store(
            configuration: configuration, credentials: AWSCredentials(accessKeyID: "a", secretAccessKey: "b"))
    }

    @Test func aServerThatNeverAnswersTimesOut() async throws {
        let listener = try Listener()
        let store = try Self.store(port: listener.port, idleTimeout: 1)
        let started = Date()
        do {
            _ = try await store.list()
            Issue.record("listing a silent server succeeded")
        } catch {
            #expect(
                "\(error)".hasPrefix("S3 LIST s3://bucket/p/ failed: no data to or from 127.0.0.1 for 1s"), "\(error)")
        }
        // Bounded (the property under test: it never hangs); generous, as the suite shares two cores.
        #expect(Date().timeIntervalSince(started) < 90)
    }

    @Test func aBodyCutShortIsAnError() async throws {
        let listener = try Listener()
        listener.serveOnce(Array("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b".utf8))
        let store = try Self.store(port: listener.port)
        let dir = TemporaryDirectory()
        let target = dir.fileURL("object")
        do {
            _ = try await store.client.download(key: "p/x", to: target.path)
            Issue.record("a truncated download succeeded")
        } catch {
            #expect(
                "\(error)"
                    == "S3 GET s3://bucket/p/x failed: the connection closed before the response ended "
                    + "(endpoint http://127.0.0.1:\(listener.port))")
        }
    }

    @Test func anHTMLErrorPageBecomesAnS3Error() async throws {
        let listener = try Listener()
        let page = "<html><body>Bad Gateway</body></html>"
        listener.serveOnce(Array("HTTP/1.1 502 Bad Gateway\r\nContent-Length: \(page.utf8.count)\r\n\r\n\(page)".utf8))
        let store = try Self.store(port: listener.port)
        do {
            _ = try await store.client.getObject(key: "p/x", limit: 100)
            Issue.record("a 502 succeeded")
        } catch let error as S3Error {
            #expect(error.status == 502)
            #expect(error.message == page)
            #expect(error.isRetryable)
        }
    }

    @Test func aResponseLargerThanAllowedIsRefused() async throws {
        let listener = try Listener()
        let body = String(repeating: "x", count: 5000)
        listener.serveOnce(Array("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n\(body)".utf8))
        let store = try Self.store(port: listener.port)
        do {
            _ = try await store.client.getObject(key: "p/manifest.json", limit: 1000)
            Issue.record("an oversized body was accepted")
        } catch let error as S3Error {
            #expect(error.code == S3Error.responseTooLarge)
            #expect(!error.isRetryable)
        }
    }

    /// A server that hands out the same continuation token again would have the listing loop forever.
    @Test func aListingThatRepeatsItsTokenIsRefused() async throws {
        let listener = try Listener()
        let page =
            "<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>same</NextContinuationToken>"
            + "<Contents><Key>p/a</Key><Size>1</Size></Contents></ListBucketResult>"
        let response = Array("HTTP/1.1 200 OK\r\nContent-Length: \(page.utf8.count)\r\n\r\n\(page)".utf8)
        listener.serveOnce(response)
        listener.serveOnce(response)
        let store = try Self.store(port: listener.port)
        do {
            _ = try await store.client.listObjects(prefix: "p/")
            Issue.record("a listing that repeats its token ended")
        } catch let error as S3Error {
            #expect(
                error.description
                    == "S3 LIST s3://bucket/p/ failed: HTTP 200 the listing repeats its continuation token")
        }
    }
}
